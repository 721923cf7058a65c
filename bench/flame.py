"""Summarises a py-spy raw (collapsed stacks) profile of the server: where the time goes.

    python -m bench.run --profile full --only floor redeem --py-spy results/profile
    python -m bench.flame results/profile/surge-redeem-full.txt

Two views: self time by library (the leaf-most frame that belongs to a known library or
to our packages), and inclusive time of the steps of a redemption.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# The leaf frame alone, for time spent below Python: waiting, or in C / Cython.
_LEAVES: list[tuple[str, str]] = [
    ("idle: waiting in select()", r"^EpollSelector\.select |^BaseSelector\.select "),
    ("grpc aio core (Cython/C under loop callbacks)", r"^Handle\._run \(asyncio/events\.py"),
    ("socket writes (Redis, PostgreSQL)", r"^_SelectorSocketTransport\.write "),
]

# Leaf-first: the first frame (from the leaf) matching one of these names the bucket.
_LIBRARIES: list[tuple[str, str]] = [
    ("logging, access log", r"(^|/)logging/|pythonjsonlogger|server/logs\.py"),
    ("prometheus metrics", r"prometheus_client|common/metrics\.py"),
    ("redis client", r"(^|/)redis/"),
    ("psycopg", r"(^|/)psycopg"),
    ("protobuf", r"google/protobuf"),
    ("grpc (python side)", r"(^|/)grpc/|grpc_health|grpc_status"),
    ("json / hashing / uuid", r"(^|/)json/|hashlib|(^|/)uuid\.py|(^|/)secrets\.py|base64"),
    ("dataclasses / datetime / enum", r"dataclasses\.py|(^|/)enum\.py|_strptime|datetime"),
    ("our code", r"(^|/)(flashsale|points|server|common|inventory)/"),
    ("asyncio event loop", r"(^|/)asyncio/"),
]

# Inclusive: a sample counts for every step whose frame is on its stack.
_STEPS: list[tuple[str, str]] = [
    ("edge interceptor (whole call)", r"^wrapper \(server/interceptors\.py"),
    ("RedemptionService.Redeem", r"^RedemptionService\.Redeem \(server/services/redemption\.py"),
    ("Admission.redeem", r"^Admission\.redeem \(flashsale/admission\.py"),
    ("  validation + fingerprint", r"^(_fingerprint|uuid_id|idempotency_key) "),
    ("  reserve (campaign gate)", r"^CampaignGate\.reserve "),
    ("  hold points (points gate)", r"^PointsGate\.hold "),
    ("  submit + wait (group commit)", r"^GroupCommitter\.submit "),
    ("group commit: PostgreSQL statement", r"^GroupCommitter\._commit "),
    ("group commit: settle", r"^Settler\.settle_batch "),
    ("convert to protobuf", r"^redemption \(server/convert\.py"),
    ("access log line", r"pythonjsonlogger|^Logger\._log "),
    ("prometheus updates", r"prometheus_client"),
    ("sweeper", r"^Sweeper\."),
]


def _parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def _frame_file(frame: str) -> str:
    match = re.search(r"\(([^)]*)\)\s*$", frame)
    return match.group(1) if match else frame


def _bucket(frames: list[str]) -> str:
    leaf = frames[-1]
    for name, pattern in _LEAVES:
        if re.search(pattern, leaf):
            return name
    for frame in reversed(frames):
        where = _frame_file(frame)
        for name, pattern in _LIBRARIES:
            if re.search(pattern, where):
                return name
    return "other"


def summarise(path: Path) -> str:
    """Main thread only (the event loop); other threads (grpc's poller, the metrics
    server) are counted apart: py-spy cannot tell their C-level waits from work."""
    stacks = _parse(path)
    main = [(f, n) for f, n in stacks if f and "_run_module_as_main" in f[0]]
    others = sum(n for f, n in stacks) - sum(n for _, n in main)
    total = sum(n for _, n in main) or 1
    by_library: Counter[str] = Counter()
    by_step: Counter[str] = Counter()
    for frames, n in main:
        by_library[_bucket(frames)] += n
        for step, pattern in _STEPS:
            if any(re.search(pattern, f) for f in frames):
                by_step[step] += n
    idle = by_library.get("idle: waiting in select()", 0)
    lines = [
        f"{path}: {total} samples of the main thread (event loop), busy "
        f"{(total - idle) / total * 100:.0f}%; {others} samples of other threads not shown",
        "",
        "self time by library (leaf-most known frame):",
    ]
    lines += [f"  {share * 100:5.1f}%  {name}" for name, share in _shares(by_library, total)]
    lines += ["", "inclusive time by step:"]
    lines += [
        f"  {by_step[step] / total * 100:5.1f}%  {step}" for step, _ in _STEPS if by_step[step]
    ]
    return "\n".join(lines)


def _shares(counts: Counter[str], total: int) -> list[tuple[str, float]]:
    return [(name, n / total) for name, n in counts.most_common()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flame", description=__doc__)
    parser.add_argument("profile", type=Path, nargs="+", help="py-spy --format raw output")
    args = parser.parse_args(argv)
    for path in args.profile:
        print(summarise(path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
