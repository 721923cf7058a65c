"""Scrape /metrics over HTTP after a known sequence of calls and check the exact counts."""

from __future__ import annotations

import asyncio
import logging
import platform
import socket
import urllib.request
from importlib import metadata
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from common.metrics import (
    CAMPAIGN_ID_CHARS,
    CAMPAIGN_NAME_CHARS,
    CampaignUnits,
    Metrics,
    campaign_label,
)
from loyalty.v1 import campaign_pb2
from tests.conftest import Running, StartServer
from tests.factories import failure

REDEEM = {
    "grpc_type": "unary",
    "grpc_service": "loyalty.v1.RedemptionService",
    "grpc_method": "Redeem",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def scrape(running: Running) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    url = f"http://127.0.0.1:{running.app.metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


async def test_metrics_count_exactly_what_happened(start_server: StartServer) -> None:
    running = await start_server(metrics_port=_free_port())
    await running.app.sweeper.stop()  # the test refreshes gauges itself
    api = running.api
    campaign = await api.campaign(units=1, points_price=100)
    winner, loser = await api.member(points=500), await api.member(points=500)

    await api.redeem(winner.id, campaign.id)
    for call in (
        api.redeem(loser.id, campaign.id),  # SOLD_OUT
        api.redeem(loser.id, campaign.id, quantity=0),  # INVALID_ARGUMENT
        api.campaigns.GetCampaign(campaign_pb2.GetCampaignRequest(campaign_id=winner.id)),
    ):
        with pytest.raises(grpc.aio.AioRpcError):
            await call
    await running.app.sweeper.refresh_gauges()
    samples = await scrape(running)

    assert value(samples, "grpc_server_started_total", **REDEEM) == 3
    assert value(samples, "grpc_server_handled_total", **REDEEM, grpc_code="OK") == 1
    assert (
        value(samples, "grpc_server_handled_total", **REDEEM, grpc_code="FailedPrecondition") == 1
    )
    assert value(samples, "grpc_server_handled_total", **REDEEM, grpc_code="InvalidArgument") == 1
    assert value(samples, "grpc_server_handled_total", **REDEEM, grpc_code="Internal") == 0
    assert value(samples, "grpc_server_handling_seconds_count", **REDEEM) == 3
    assert value(samples, "grpc_server_msg_received_total", **REDEEM) == 3
    assert value(samples, "grpc_server_msg_sent_total", **REDEEM) == 1
    not_found = {
        **REDEEM,
        "grpc_service": "loyalty.v1.CampaignService",
        "grpc_method": "GetCampaign",
    }
    assert value(samples, "grpc_server_handled_total", **not_found, grpc_code="NotFound") == 1
    # Pre-initialised: a method never called is there, at zero.
    never = {**REDEEM, "grpc_method": "ConfirmPayment"}
    assert value(samples, "grpc_server_handled_total", **never, grpc_code="OK") == 0

    assert value(samples, "surge_redemptions_total", outcome="committed") == 1
    assert value(samples, "surge_redemptions_total", outcome="sold_out") == 1
    assert value(samples, "surge_redemptions_total", outcome="invalid") == 1
    assert value(samples, "surge_redemptions_total", outcome="error") == 0
    assert value(samples, "surge_commit_batch_size_count") == 1
    assert value(samples, "surge_commit_batch_size_sum") == 1
    assert value(samples, "surge_commit_duration_seconds_count") == 1
    assert value(samples, "surge_redis_script_duration_seconds_count", script="reserve") == 2
    assert value(samples, "surge_redis_script_duration_seconds_count", script="hold") == 1
    label = f"Holiday surge {campaign.id[:8]}"
    assert value(samples, "surge_campaign_units", campaign=label, state="committed") == 1
    assert value(samples, "surge_campaign_units", campaign=label, state="remaining") == 0
    assert value(samples, "surge_campaign_units", campaign=label, state="allotted") == 1
    assert value(samples, "surge_holds_active") == 0
    assert value(samples, "surge_dependency_up", dependency="redis") == 1
    assert value(samples, "surge_dependency_up", dependency="postgresql") == 1
    assert value(samples, "surge_pg_pool_waiting") == 0
    assert not any("member" in dict(labels) for _, labels in samples)


async def test_metrics_carry_build_and_process_series_and_no_created(
    start_server: StartServer,
) -> None:
    running = await start_server(metrics_port=_free_port())
    await running.app.sweeper.stop()
    campaign = await running.api.campaign(units=3)
    await running.app.sweeper.refresh_gauges()
    url = f"http://127.0.0.1:{running.app.metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    samples = await scrape(running)
    names = {name for name, _ in samples}

    assert not [line for line in body.splitlines() if line.split("{")[0].endswith("_created")]
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= names
    assert {"process_start_time_seconds", "python_info"} <= names
    assert any(name.startswith("python_gc_") for name in names)
    [(_, build)] = [key for key in samples if key[0] == "surge_build_info"]
    assert samples[("surge_build_info", build)] == 1
    assert dict(build) == {
        "version": metadata.version("surge"),
        "python": platform.python_version(),
        "grpc": grpc.__version__,
    }
    # The campaign label is the name people gave it plus the id's first 8 characters.
    labels = {dict(key[1])["campaign"] for key in samples if key[0] == "surge_campaign_units"}
    assert labels == {f"Holiday surge {campaign.id[:8]}"}


def test_campaign_label_is_bounded_and_tells_namesakes_apart() -> None:
    a = "3f2a9c1e-0000-4000-8000-000000000001"
    b = "77aa01bc-0000-4000-8000-000000000002"
    long_name = "Black Friday\n  mega   sale: every item in the mall at half its points price"

    assert campaign_label(a, "Summer sale") == "Summer sale 3f2a9c1e"
    assert campaign_label(a, "Summer sale") != campaign_label(b, "Summer sale")
    assert campaign_label(a, long_name) == "Black Friday mega sale: every it 3f2a9c1e"
    assert len(campaign_label(a, "x" * 10_000)) == CAMPAIGN_NAME_CHARS + 1 + CAMPAIGN_ID_CHARS
    assert campaign_label(a, "  ") == "3f2a9c1e"


def test_set_campaigns_drops_a_gone_campaign_and_a_renamed_ones_old_label() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, process_collectors=False)
    a, b = "3f2a9c1e-0000-4000-8000-000000000001", "77aa01bc-0000-4000-8000-000000000002"

    metrics.set_campaigns(
        [CampaignUnits(a, "Summer", 10, 1, 0), CampaignUnits(b, "Winter", 5, 0, 0)]
    )
    metrics.set_campaigns([CampaignUnits(a, "Summer sale", 10, 2, 0)])

    shown = {
        (s.labels["campaign"], s.labels["state"]): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "surge_campaign_units"
    }
    assert set(shown) == {
        ("Summer sale 3f2a9c1e", st) for st in ("allotted", "remaining", "held", "committed")
    }
    assert shown[("Summer sale 3f2a9c1e", "remaining")] == 8


def test_set_campaigns_sets_only_what_changed() -> None:
    """Every second with every open campaign: unchanged series are not set again (10^4
    campaigns took 112 ms of the event loop each time), changed ones are."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, process_collectors=False)
    ids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(3)]
    rows = [CampaignUnits(x, f"Sale {i}", 10, 1, 0) for i, x in enumerate(ids)]
    metrics.set_campaigns(rows)
    touched: list[tuple[str, ...]] = []
    labels = metrics.campaign_units.labels

    def counting(*values: str) -> Any:
        touched.append(values)
        return labels(*values)

    metrics.campaign_units.labels = counting  # type: ignore[method-assign,assignment]
    metrics.set_campaigns(rows)
    assert touched == []
    metrics.set_campaigns([*rows[:2], CampaignUnits(ids[2], "Sale 2", 10, 2, 1)])
    assert {label for label, _ in touched} == {"Sale 2 00000002"}
    shown = {
        (s.labels["campaign"], s.labels["state"]): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "surge_campaign_units"
    }
    assert shown[("Sale 2 00000002", "remaining")] == 7
    assert shown[("Sale 0 00000000", "remaining")] == 9


async def test_sweeper_metrics_count_released_holds_and_lag(start_server: StartServer) -> None:
    from tests.flashsale.test_recovery import hold_as_a_dying_process_would

    running = await start_server(metrics_port=_free_port())
    await running.app.sweeper.stop()
    api = running.api
    campaign = await api.campaign(units=2)
    member = await api.member(points=1000)
    await hold_as_a_dying_process_would(running, member.id, campaign.id, "lost-1")
    await running.app.sweeper.refresh_gauges()
    during = await scrape(running)
    await asyncio.sleep(running.app.settings.hold_ttl_seconds + 0.2)

    await running.app.sweeper.sweep_once()
    after = await scrape(running)

    assert value(during, "surge_holds_active") == 1
    label = f"Holiday surge {campaign.id[:8]}"
    assert value(during, "surge_campaign_units", campaign=label, state="held") == 1
    assert value(after, "surge_sweeper_holds_total", action="released") == 1
    assert value(after, "surge_sweeper_holds_total", action="committed") == 0
    assert 0 < value(after, "surge_sweeper_lag_seconds") < 2
    assert value(after, "surge_cache_loads_total", kind="campaign") >= 1


async def test_access_log_carries_the_gateways_request_id(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    campaign = await server.api.campaign(units=1)
    member = await server.api.member()
    caplog.set_level(logging.INFO, logger="surge.access")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await server.api.redemptions.Redeem(
            __import__("loyalty.v1.redemption_pb2", fromlist=["x"]).RedeemRequest(
                member_id=member.id, campaign_id=campaign.id, quantity=1, idempotency_key="log-key"
            ),
            metadata=(("x-request-id", "req-123"),),
        )

    assert failure(refused.value).reason == "INSUFFICIENT_POINTS"
    [line] = [r for r in caplog.records if getattr(r, "method", "").endswith("/Redeem")]
    assert line.request_id == "req-123"  # type: ignore[attr-defined]
    assert line.code == "FailedPrecondition"  # type: ignore[attr-defined]
    assert line.idempotency_key == "log-key"  # type: ignore[attr-defined]
    assert line.latency_ms > 0  # type: ignore[attr-defined]


def test_json_log_lines_are_json_with_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from server.interceptors import request_id
    from server.logs import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", json_lines=True)
        token = request_id.set("req-9")
        logging.getLogger("surge.access").info("rpc", extra={"method": "/x/Y", "code": "OK"})
        request_id.reset(token)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (line["request_id"], line["method"], line["code"], line["level"]) == (
        "req-9",
        "/x/Y",
        "OK",
        "INFO",
    )
