"""The edge counts and logs the code a client actually got: a call the client gave up on
is CANCELLED (not OK), bytes that are not the request message are INVALID_ARGUMENT (not
UNKNOWN with a traceback), and the client's request id is cleaned before it is logged."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import pytest
from grpc_health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpc_health.v1.health_pb2_grpc import HealthStub

from loyalty.v1 import redemption_pb2
from server.interceptors import REQUEST_ID_MAX, clean_request_id
from tests.conftest import Running, StartServer
from tests.factories import failure
from tests.flashsale.helpers import outcomes

REDEEM = ("unary", "loyalty.v1.RedemptionService", "Redeem")


def handled(running: Running, code: str) -> float:
    child = running.app.metrics.rpc_handled.labels(*REDEEM, code)
    return float(child._value.get())


async def test_a_call_its_client_gave_up_on_is_counted_and_logged_cancelled(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    api = server.api
    campaign = await api.campaign(units=5)
    member = await api.member(points=1000)
    await server.app.redis.client_pause(1500)  # the handler waits on Redis...
    caplog.set_level(logging.INFO, logger="surge.access")

    with pytest.raises(grpc.aio.AioRpcError) as gave_up:
        await api.redemptions.Redeem(
            redemption_pb2.RedeemRequest(
                member_id=member.id, campaign_id=campaign.id, quantity=1, idempotency_key="k"
            ),
            timeout=0.3,  # ...longer than the client
        )
    await asyncio.sleep(2.0)  # the pause ends; the server has answered by now

    assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert handled(server, "Canceled") == 1
    assert handled(server, "OK") == 0
    codes = [
        getattr(r, "code", None)
        for r in caplog.records
        if r.name == "surge.access" and getattr(r, "method", "").endswith("/Redeem")
    ]
    assert codes == ["Canceled"]


async def test_a_malformed_request_is_invalid_argument_counted_and_logged(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="surge.access")
    raw: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = server.channel.unary_unary(
        "/loyalty.v1.RedemptionService/Redeem"
    )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await raw(b"\xff\xff\xff\xff not protobuf")

    f = failure(refused.value)
    assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, "request")
    assert handled(server, "InvalidArgument") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    codes = [getattr(r, "code", None) for r in caplog.records if r.name == "surge.access"]
    assert codes == ["InvalidArgument"]


def test_a_request_id_is_capped_and_cleaned_before_it_is_logged() -> None:
    assert clean_request_id("abc-123_X.y:z") == "abc-123_X.y:z"
    assert clean_request_id('evil"\n{"level": "ERROR"}') == "evillevel:ERROR"
    assert len(clean_request_id("a" * 10_000)) == REQUEST_ID_MAX
    fresh = clean_request_id("\n\t\"'")
    assert len(fresh) == 36 and fresh.count("-") == 4  # a UUID of its own


async def test_calls_past_the_limit_are_shed_at_once_and_health_never(
    start_server: StartServer,
) -> None:
    """With the process's calls in flight at its limit, a new call is refused
    RESOURCE_EXHAUSTED (OVERLOADED, with a retry delay) before any work; the admitted ones
    finish; health still answers."""
    server = await start_server(max_concurrent_calls=2)
    api = server.api
    campaign = await api.campaign(units=10)
    members = [await api.member(points=1000) for _ in range(6)]
    await server.app.redis.client_pause(1000)  # the admitted calls wait on Redis

    calls = [asyncio.ensure_future(api.redeem(m.id, campaign.id)) for m in members[:2]]
    await asyncio.sleep(0.2)  # both admitted and waiting
    began = time.perf_counter()
    ok, shed = await outcomes(api.redeem(m.id, campaign.id) for m in members[2:])
    shed_in = time.perf_counter() - began
    health = await HealthStub(server.channel).Check(HealthCheckRequest(), timeout=0.5)
    admitted = await asyncio.gather(*calls)

    assert not ok and shed == {"OVERLOADED": 4} and shed_in < 0.5
    assert health.status == HealthCheckResponse.SERVING
    assert all(a.redemption.quantity == 1 for a in admitted)
    assert handled(server, "ResourceExhausted") == 4
    assert (await api.get_campaign(campaign.id)).units_committed == 2
