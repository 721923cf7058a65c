"""The gate's Lua scripts on a real Redis Cluster, through redis-py's RedisCluster.

Each script touches one hash slot ({campaign:ID} or {member:ID}), so redis-py routes its
EVALSHA to the primary that owns the slot. The service still sends scripts through the
auto-pipeline, which speaks to one server; here a stand-in with the pipeline's `call` sends
each one alone through the cluster client (redis-py's Script: EVALSHA, and on NOSCRIPT a
SCRIPT LOAD on every primary and a second EVALSHA)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from common.autopipeline import AutoPipeline
from common.metrics import Metrics
from flashsale.gate import (
    CampaignGate,
    CampaignKeys,
    CampaignLoad,
    CampaignMirror,
    Outcome,
    Reserve,
)
from points.gate import Hold, MemberMirror, PointsGate, member_keys
from tests.local_cluster import PRIMARIES, LocalCluster


class OneByOne:
    """AutoPipeline.call's shape on a cluster client: one routed EVALSHA per call."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client

    def call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return asyncio.ensure_future(script(keys=list(keys), args=list(args), client=self._client))


@pytest.fixture
async def cluster_client(redis_cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster.url)
    await client.flushall()  # every primary
    yield client
    await client.aclose()


def _one_id_per_primary(cluster: LocalCluster, tag: str) -> dict[int, str]:
    """An id per primary whose `{tag:ID}` hash slot that primary owns."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < PRIMARIES:
        found.setdefault(cluster.primary_of("{" + tag + ":" + str(n) + "}"), str(n))
        n += 1
    return found


def _gates(client: RedisCluster) -> tuple[CampaignGate, PointsGate]:
    metrics = Metrics(CollectorRegistry())
    calls = cast(AutoPipeline, OneByOne(client))
    as_redis = cast(Redis, client)  # the gates only register scripts and call through `calls`
    campaigns = CampaignGate(
        as_redis,
        calls=calls,
        record_ttl_seconds=3600,
        refusal_ttl_seconds=600,
        retention_after_end_seconds=3600,
        metrics=metrics,
    )
    points = PointsGate(
        as_redis, calls=calls, metrics=metrics, key_ttl_seconds=600, idle_seconds=3600
    )
    return campaigns, points


def _open_sale(allotted: int) -> CampaignLoad:
    now_ms = int(time.time() * 1000)
    return CampaignLoad(
        allotted=allotted,
        limit=2,
        starts_ms=now_ms - 60_000,
        ends_ms=now_ms + 3_600_000,
        taken=0,
        version=1,
        members=[],
    )


async def _sell_one(campaigns: CampaignGate, campaign_id: str, member: str, key: str) -> None:
    hold = member + ":" + key
    reply = await campaigns.reserve(
        campaign_id, member, hold, quantity=1, fingerprint="fp-" + key, hold_ttl_ms=30_000
    )
    assert reply.code is Reserve.HELD, reply
    again = await campaigns.reserve(
        campaign_id, member, hold, quantity=1, fingerprint="fp-" + key, hold_ttl_ms=30_000
    )
    assert again.code is Reserve.IN_FLIGHT  # the retry finds the same hold
    resolved = await campaigns.resolve(
        campaign_id,
        member,
        hold,
        fingerprint="fp-" + key,
        outcome=Outcome.DONE,
        mirror=CampaignMirror(taken=1, version=2, member_taken=1, member_version=1),
    )
    assert resolved == 1
    done = await campaigns.reserve(
        campaign_id, member, hold, quantity=1, fingerprint="fp-" + key, hold_ttl_ms=30_000
    )
    assert done.code is Reserve.DONE


async def test_reserve_and_resolve_on_every_primary(
    redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    campaigns, _ = _gates(cluster_client)
    await campaigns.load_scripts()  # SCRIPT LOAD goes to every primary
    on = _one_id_per_primary(redis_cluster, "campaign")
    assert len(on) == PRIMARIES
    for port, campaign_id in on.items():
        assert await campaigns.load(campaign_id, _open_sale(allotted=1))
        await _sell_one(campaigns, campaign_id, "m1", "k1")
        # The state is on the primary that owns the campaign's slot, and nowhere else.
        state = redis.Redis(port=port, decode_responses=True).hgetall(
            CampaignKeys(campaign_id).state
        )
        assert state["taken"] == "1" and state.get("held", "0") == "0", state
        sold_out = await campaigns.reserve(
            campaign_id, "m2", "m2:k1", quantity=1, fingerprint="fp", hold_ttl_ms=30_000
        )
        assert sold_out.code is Reserve.SOLD_OUT


async def test_scripts_survive_a_script_flush(
    redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    campaigns, points = _gates(cluster_client)
    await campaigns.load_scripts()
    await points.load_scripts()
    on = _one_id_per_primary(redis_cluster, "campaign")
    for campaign_id in on.values():
        await campaigns.load(campaign_id, _open_sale(allotted=10))
    # Every primary forgets every script: the next calls meet NOSCRIPT and load them again.
    for port in on:
        redis.Redis(port=port).script_flush()
        assert not any(redis.Redis(port=port).script_exists(campaigns._reserve.sha))
    for campaign_id in on.values():
        await _sell_one(campaigns, campaign_id, "m1", "after-flush")
    for port in on:  # loaded again where it was needed
        assert all(redis.Redis(port=port).script_exists(campaigns._reserve.sha))
    members = _one_id_per_primary(redis_cluster, "member")
    for port, member_id in members.items():
        redis.Redis(port=port).script_flush()
        # Load the member (the mirror of PostgreSQL), hold points, then settle the hold.
        await points.settle(member_id, mirror=MemberMirror(100, 1, False, True))
        held = await points.hold(
            member_id,
            member_id + ":k",
            30,
            deadline_ms=int(time.time() * 1000) + 30_000,
            campaign_id="c",
        )
        assert held.code is Hold.HELD, held
        assert int(redis.Redis(port=port).hget(member_keys(member_id)[0], "held") or 0) == 30
        await points.settle(
            member_id, hold_id=member_id + ":k", mirror=MemberMirror(70, 2, False, None)
        )
        state = redis.Redis(port=port, decode_responses=True).hgetall(member_keys(member_id)[0])
        assert state["spendable"] == "70" and state.get("held", "0") == "0", state
