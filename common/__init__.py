"""Pieces every domain package shares: the error tree, input validation, store helpers."""
