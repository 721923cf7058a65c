"""Benchmarks of Surge side by side: floor, success path, hot item, refusals, naive peer.

Run with `make bench` (or `python -m bench.run --profile quick|full`).
"""
