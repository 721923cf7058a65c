"""The benchmark's bare floor and flash-sale mix: the bare server answers health and nothing
else; the mix spreads its calls as told and counts the hot campaign's redemptions; the ratios
divide by the right floor; an oversold mix fails the run.

(`make bench-quick` in CI runs them all end to end, with the audit after.)"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import report
from bench.loadgen import OK, SOLD_OUT, LoadSpec, Samples, Stats
from bench.servers import ServerProcess, free_port
from bench.workloads import Load
from loyalty.v1 import redemption_pb2, redemption_pb2_grpc


def test_bare_floor_serves_health_and_nothing_else(tmp_path: Path) -> None:
    port = free_port()
    bare = ServerProcess(
        "bare",
        [sys.executable, "-m", "bench.bare", "--address", f"127.0.0.1:{port}"],
        dict(os.environ) | {"BENCH_PORT": str(port)},
        tmp_path / "bare.log",
    )
    try:
        bare.wait_ready(timeout=30)
        with grpc.insecure_channel(bare.address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as refused:
                redemption_pb2_grpc.RedemptionServiceStub(channel).Redeem(
                    redemption_pb2.RedeemRequest(), timeout=5
                )
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        assert bare.stop() == 0  # SIGTERM: a clean stop


def test_a_mix_needs_its_hot_campaign_and_a_share() -> None:
    base = {"name": "mix", "target": "127.0.0.1:1", "call": "redeem", "concurrency": 1}
    ids = {"campaign_ids": ("warm",), "member_ids": ("m",), "duration_s": 1.0}
    with pytest.raises(ValueError, match="hot_share"):
        LoadSpec(**base, **ids, hot_share=0.8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hot_share"):
        LoadSpec(**base, **ids, hot_share=1.5, hot_campaign="hot")  # type: ignore[arg-type]
    LoadSpec(**base, **ids, hot_share=0.8, hot_campaign="hot")  # type: ignore[arg-type]


def _result(
    key: str, system: str, per_second: float, p99_ms: float, **samples: int
) -> report.Result:
    spec = LoadSpec(name=key, target="127.0.0.1:1", call="health", concurrency=1, duration_s=1)
    stats = Stats(100, 1.0, per_second, p99_ms / 2, p99_ms, p99_ms, p99_ms)
    result = report.Result(Load(key, system, spec), Samples(**samples), {}, {}, {})  # type: ignore[arg-type]
    result.rows.append(report.Row(key, system, key, OK, stats))
    return result


def _by_name(ratios: list[report.Ratio]) -> dict[str, report.Ratio]:
    return {q.name: q for q in ratios}


def test_ratios_divide_by_the_bare_floor_and_show_surges_beside() -> None:
    found = _by_name(
        report.ratios(
            [
                _result("floor", "bare", 4000, 20),
                _result("floor", "surge", 3000, 30),
                _result("redeem", "surge", 1500, 60),
                _result("refusal_sold_out", "surge", 3800, 25),
                _result("floor_mix", "bare", 5000, 50),
                _result("mix", "surge", 4000, 120),
            ]
        )
    )
    edge = found["edge: Surge floor / bare floor"]
    assert edge.value == pytest.approx(0.75) and edge.met is False
    redeem = found["redeem / floor"]
    assert redeem.value == pytest.approx(1500 / 4000)
    assert redeem.of_surge_floor == pytest.approx(1500 / 3000)
    sold_out = found["sold out / floor"]
    assert sold_out.value == pytest.approx(0.95) and sold_out.met is True
    # The mix against the bare floor measured at the mix's own concurrency.
    mix = found["mix / floor"]
    assert mix.value == pytest.approx(0.8) and mix.met is False
    latency = found["mix p99 / floor p99"]
    assert latency.value == pytest.approx(120 / 50) and latency.met is False
    assert found["hot / floor"].value is None  # not measured: no ratio, no verdict
    assert found["hot / floor"].met is None


def test_an_oversold_mix_fails_the_run() -> None:
    fine = _result("mix", "surge", 1000, 100, hot_ok=300)
    oversold = _result("mix", "surge", 1000, 100, hot_ok=301)
    assert report.problems([fine], hot_stock=3000, mix_hot_stock=300) == []
    assert report.problems([oversold], hot_stock=3000, mix_hot_stock=300) == [
        "mix: 301 hot redemptions of 300 units"
    ]


def test_the_mix_counts_every_answer_and_its_redemptions_apart() -> None:
    spec = LoadSpec(
        name="mix",
        target="127.0.0.1:1",
        call="redeem",
        concurrency=1,
        duration_s=1,
        campaign_ids=("w",),
        member_ids=("m",),
    )
    outcomes = [OK, SOLD_OUT, SOLD_OUT, "LIMIT_EXCEEDED"]
    samples = Samples(
        done_at=[0.1, 0.2, 0.3, 0.4],
        latency=[0.01, 0.02, 0.03, 0.04],
        outcome=outcomes,
        elapsed_s=2.0,
        calls_total=4,
    )
    built = report.build(
        Load("mix", "surge", spec), samples, cpu_s={}, redis_commands={}, pg_statements={}
    )
    every, sold = built.rows
    assert (every.key, every.stats.calls, every.stats.per_second) == ("mix", 4, 2.0)
    assert (sold.key, sold.stats.calls) == ("mix_sold", 1)
    assert built.outcomes == Counter(outcomes)
    assert not math.isnan(every.stats.p99_ms)
