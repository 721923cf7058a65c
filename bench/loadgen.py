"""The benchmark's own load generator: an asyncio gRPC client (grpc.aio).

A load is N workers, each looping one kind of call (Health/Check, or Redeem with a fresh
idempotency key per call) until a deadline or a call budget, timing every call with
time.perf_counter. It can be split across client processes (`run_load(..., processes=2)`)
so the client is not the bottleneck of a 2-core box; every part keeps its raw samples and
they are merged and summarised here (rps, p50/p95/p99, outcome counts, phases).

Every loop is bounded in time and in count, and the target is always 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any, Literal

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loyalty.v1 import redemption_pb2, redemption_pb2_grpc

OK = "OK"
SOLD_OUT = "SOLD_OUT"
_DETAILS_KEY = "grpc-status-details-bin"
_START_DELAY_S = 0.5  # time every part gets to connect before the common start


@dataclass(frozen=True)
class LoadSpec:
    """One load: who is called, how, by how many workers, for how long."""

    name: str
    target: str  # host:port, loopback only
    call: Literal["health", "redeem"]
    concurrency: int
    duration_s: float  # measured time, after the warm-up
    warmup_s: float = 0.0  # calls made but not recorded
    max_calls: int = 5_000_000  # per part: a hard bound on top of the deadline
    campaign_ids: tuple[str, ...] = ()
    member_ids: tuple[str, ...] = ()
    quantity: int = 1
    # Hot item: stop this long after this part first sees SOLD_OUT (the deadline still holds).
    stop_after_sold_out_s: float | None = None
    # Flash-sale mix: this share of the calls goes to hot_campaign, the rest to campaign_ids.
    hot_campaign: str = ""
    hot_share: float = 0.0
    key_prefix: str = "bench"
    seed: int = 1
    call_timeout_s: float = 30.0
    # Sent on every call (the credential; the naive peer gets the same bytes and ignores it).
    metadata: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        host = self.target.rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            raise ValueError(f"the benchmark only sends traffic to loopback, not {self.target}")
        if self.call == "redeem" and not (self.campaign_ids and self.member_ids):
            raise ValueError("a redeem load needs campaigns and members")
        if not 0.0 <= self.hot_share <= 1.0 or (self.hot_share and not self.hot_campaign):
            raise ValueError("hot_share is a share (0..1) of the calls to hot_campaign")


@dataclass
class Samples:
    """Raw results of one part: per call, completion time (s since the common start),
    latency (s) and outcome (OK, an ErrorInfo reason, or a status code name)."""

    done_at: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0  # from the common start to this part's last call
    calls_total: int = 0  # with the warm-up's
    warmup_ok: int = 0  # OKs during the warm-up (they commit too)
    hot_ok: int = 0  # OKs for the hot campaign of a mix, warm-up included (oversell check)
    client_cpu_s: float = 0.0  # CPU time of the client process(es) over the load

    def extend(self, other: Samples) -> None:
        self.done_at += other.done_at
        self.latency += other.latency
        self.outcome += other.outcome
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.calls_total += other.calls_total
        self.warmup_ok += other.warmup_ok
        self.hot_ok += other.hot_ok
        self.client_cpu_s += other.client_cpu_s


# -- One part: runs inside a client process -----------------------------------------------


def _reason(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return info.reason or error.code().name
    return error.code().name


async def _run_part(spec: LoadSpec, part: int, parts: int, start_at: float) -> Samples:
    workers = spec.concurrency // parts + (1 if part < spec.concurrency % parts else 0)
    samples = Samples()
    cpu_at_start = time.process_time()
    async with grpc.aio.insecure_channel(spec.target) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        health = health_pb2_grpc.HealthStub(channel).Check
        redeem = redemption_pb2_grpc.RedemptionServiceStub(channel).Redeem
        check = health_pb2.HealthCheckRequest(service="")
        record_from = start_at + spec.warmup_s
        deadline = record_from + spec.duration_s
        budget = [spec.max_calls]
        sold_out_seen: list[float] = []

        async def worker(index: int) -> None:
            rng = random.Random(spec.seed * 1_000_003 + part * 10_007 + index)
            campaigns, members = spec.campaign_ids, spec.member_ids
            hot, hot_share = spec.hot_campaign, spec.hot_share
            prefix = f"{spec.key_prefix}-{spec.seed}-{part}-{index}-"
            n = 0
            await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
            while budget[0] > 0:
                now = time.perf_counter()
                if now >= deadline:
                    return
                if sold_out_seen and now >= sold_out_seen[0]:
                    return
                budget[0] -= 1
                samples.calls_total += 1
                n += 1
                outcome = OK
                to_hot = hot_share > 0 and rng.random() < hot_share
                started = time.perf_counter()
                try:
                    if spec.call == "health":
                        await health(check, timeout=spec.call_timeout_s, metadata=spec.metadata)
                    else:
                        await redeem(
                            redemption_pb2.RedeemRequest(
                                member_id=members[rng.randrange(len(members))],
                                campaign_id=hot
                                if to_hot
                                else campaigns[rng.randrange(len(campaigns))],
                                quantity=spec.quantity,
                                idempotency_key=prefix + str(n),
                            ),
                            timeout=spec.call_timeout_s,
                            metadata=spec.metadata,
                        )
                except grpc.aio.AioRpcError as error:
                    outcome = _reason(error)
                finished = time.perf_counter()
                samples.hot_ok += to_hot and outcome == OK
                if started < record_from:
                    samples.warmup_ok += outcome == OK
                    continue  # warm-up
                samples.done_at.append(finished - start_at)
                samples.latency.append(finished - started)
                samples.outcome.append(outcome)
                if (
                    outcome == SOLD_OUT
                    and spec.stop_after_sold_out_s is not None
                    and not sold_out_seen
                ):
                    sold_out_seen.append(finished + spec.stop_after_sold_out_s)

        await asyncio.gather(*(worker(i) for i in range(workers)))
    samples.client_cpu_s = time.process_time() - cpu_at_start
    if samples.done_at:
        samples.elapsed_s = max(samples.done_at)
    return samples


def run_part(spec: LoadSpec, part: int, parts: int, start_at: float) -> Samples:
    """Entry point in a client process (picklable: module level)."""
    return asyncio.run(_run_part(spec, part, parts, start_at))


def _ready() -> bool:
    time.sleep(0.3)  # long enough that each warm-up task lands on its own process
    return True


class LoadGenerator:
    """A pool of client processes, started once and reused for every load."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool = ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn"))
        for f in [self._pool.submit(_ready) for _ in range(processes)]:
            f.result(timeout=60)

    def run(self, spec: LoadSpec) -> Samples:
        start_at = time.perf_counter() + _START_DELAY_S  # CLOCK_MONOTONIC: shared by processes
        futures: list[Future[Samples]] = [
            self._pool.submit(run_part, spec, part, self.processes, start_at)
            for part in range(self.processes)
        ]
        bound = _START_DELAY_S + spec.warmup_s + spec.duration_s + spec.call_timeout_s + 30
        merged = Samples()
        for f in futures:
            merged.extend(f.result(timeout=bound))
        # Measured time: from the end of the warm-up to the last call of any part.
        merged.done_at = [t - spec.warmup_s for t in merged.done_at]
        merged.elapsed_s = max(0.0, merged.elapsed_s - spec.warmup_s)
        return merged

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- Summaries -------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when there are none)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True)
class Stats:
    calls: int
    seconds: float
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, latencies: Sequence[float], seconds: float) -> Stats:
        ordered = sorted(latencies)
        rate = len(ordered) / seconds if seconds > 0 else 0.0
        return cls(
            calls=len(ordered),
            seconds=seconds,
            per_second=rate,
            p50_ms=percentile(ordered, 50) * 1000,
            p95_ms=percentile(ordered, 95) * 1000,
            p99_ms=percentile(ordered, 99) * 1000,
            max_ms=(ordered[-1] * 1000) if ordered else math.nan,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in self.__dict__.items()
        }


def outcomes(samples: Samples) -> Counter[str]:
    return Counter(samples.outcome)


def steady(samples: Samples, selected: set[str] | None = None) -> Stats:
    """Rate and latency of the calls whose outcome is in `selected` (all when None) over
    the whole measured time."""
    lat = [
        lat
        for lat, out in zip(samples.latency, samples.outcome, strict=True)
        if selected is None or out in selected
    ]
    return Stats.of(lat, samples.elapsed_s)


@dataclass(frozen=True)
class HotPhases:
    """A hot item: redemptions while stock lasts, then refusals once it is gone."""

    sold: Stats  # OKs, from the start to the last OK
    refused: Stats  # refusals after the last OK, until the end
    sold_out_at_s: float | None  # the last OK (None: never sold out)
    first_sold_out_s: float | None  # the first SOLD_OUT answer


def hot_phases(samples: Samples) -> HotPhases:
    rows = sorted(zip(samples.done_at, samples.latency, samples.outcome, strict=True))
    oks = [t for t, _, o in rows if o == OK]
    refusals = [t for t, _, o in rows if o == SOLD_OUT]
    if not refusals:  # never sold out within the deadline
        return HotPhases(
            sold=Stats.of([lat for _, lat, o in rows if o == OK], samples.elapsed_s),
            refused=Stats.of([], 0.0),
            sold_out_at_s=None,
            first_sold_out_s=None,
        )
    last_ok = oks[-1] if oks else 0.0
    sold = [lat for t, lat, o in rows if o == OK]
    after = [lat for t, lat, o in rows if o != OK and t > last_ok]
    return HotPhases(
        sold=Stats.of(sold, last_ok),
        refused=Stats.of(after, max(0.0, samples.elapsed_s - last_ok)),
        sold_out_at_s=last_ok,
        first_sold_out_s=refusals[0],
    )
