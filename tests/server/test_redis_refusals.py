"""Redis refusing writes (maxmemory with noeviction, the recommended policy, or a replica's
READONLY after a failover) is UNAVAILABLE with a reason and a retry delay, never INTERNAL,
and never an error that hides a commit in PostgreSQL."""

from __future__ import annotations

import logging

import grpc
import pytest
from redis.asyncio import Redis

from common.redis_nodes import standalone_name
from loyalty.v1 import member_pb2
from server.app import Stores
from tests.conftest import Running, StartServer
from tests.factories import failure, key
from tests.redis_helpers import sync_client


async def _earn(server: Running, member_id: str, points: int) -> member_pb2.EarnPointsResponse:
    return await server.api.members.EarnPoints(
        member_pb2.EarnPointsRequest(
            member_id=member_id, points=points, reason="test", idempotency_key=key()
        )
    )


async def test_a_commit_is_answered_ok_while_redis_refuses_writes(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=5, points_price=100)
    member = await api.member(points=100)
    await api.redeem(member.id, campaign.id)  # the member and campaign are in Redis: 0 left

    client = server.app.redis
    before: dict[str, str] = await client.config_get("maxmemory*")  # type: ignore[assignment]
    used = int((await client.info("memory"))["used_memory"])
    await client.config_set("maxmemory-policy", "noeviction")
    await client.config_set("maxmemory", str(max(1, used // 2)))
    try:
        earned = await _earn(server, member.id, 500)  # PostgreSQL commits; Redis refuses
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.redeem(member.id, campaign.id)
    finally:
        await client.config_set("maxmemory", before["maxmemory"])
        await client.config_set("maxmemory-policy", before["maxmemory-policy"])

    assert earned.points == 500 and earned.balance.balance == 500
    f = failure(refused.value)
    assert f.code == grpc.StatusCode.UNAVAILABLE
    assert (f.reason, f.metadata["dependency"]) == ("DEPENDENCY_UNAVAILABLE", "redis")
    assert f.retry_delay_s > 0
    # The mirror that missed the commit is reloaded by the next sweep: the member can
    # spend the points earned while Redis was full.
    await server.app.sweeper.sweep_once()
    assert (await api.redeem(member.id, campaign.id, quantity=5 - 1)).redemption.quantity == 4


async def test_an_evicting_policy_is_warned_at_start_and_shown_in_metrics(
    start_server: StartServer, stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    client = sync_client(stores.redis_url)
    before: dict[str, str] = client.config_get("maxmemory*")  # type: ignore[assignment]
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.config_set("maxmemory", "512mb")
    try:
        server = await start_server()
        await server.app.sweeper.refresh_gauges()
    finally:
        client.config_set("maxmemory-policy", before["maxmemory-policy"])
        client.config_set("maxmemory", before["maxmemory"])
        client.close()

    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("allkeys-lru" in w and "noeviction" in w for w in warned)
    m = server.app.metrics
    assert m.redis_evicts._value.get() == 1
    assert isinstance(server.app.redis, Redis)  # this test's Redis: one server
    node = standalone_name(server.app.redis)  # the `node` label: host:port
    assert m.redis_memory.labels("max", node)._value.get() == 512 * 1024 * 1024
    assert m.redis_memory.labels("used", node)._value.get() > 0
