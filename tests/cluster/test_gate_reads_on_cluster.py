"""What reads many slots or one node at once, on a real Redis Cluster (issue 14, items 2-6):
the gate's multi-campaign pipelines, the rebuild's member batches (with NOSCRIPT on one
primary in between), the audit's member pipelines, Redis's clock per primary, and INFO
memory on every primary."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis
from redis.asyncio import RedisCluster

from common import redis_memory
from common.redis_nodes import RedisClock, primaries
from flashsale.audit import AuditReport, _audit_members, _audit_points_holds
from flashsale.gate import CampaignKeys, Reserve
from points.gate import MemberMirror, member_keys
from tests.cluster.test_scripts_on_cluster import _gates, _one_id_per_primary, _open_sale
from tests.local_cluster import PRIMARIES, LocalCluster
from tests.redis_helpers import flush_all, scan_all


@pytest.fixture
async def cluster_client(redis_cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster.url)
    await client.flushall()  # every primary
    yield client
    await client.aclose()


def _ids_on_primaries(cluster: LocalCluster, tag: str, per_primary: int) -> list[str]:
    """`per_primary` ids on each primary, interleaved (a, b, c, a, b, c...) so any reply
    grouped by node would come back out of order."""
    by_port: dict[int, list[str]] = {}
    n = 0
    while len(by_port) < PRIMARIES or min(len(v) for v in by_port.values()) < per_primary:
        ids = by_port.setdefault(cluster.primary_of("{" + tag + ":" + str(n) + "}"), [])
        if len(ids) < per_primary:
            ids.append(str(n))
        n += 1
    return [ids[i] for i in range(per_primary) for ids in by_port.values()]


async def test_many_campaigns_answer_in_order_across_primaries(
    redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    campaigns, _ = _gates(cluster_client)
    await campaigns.load_scripts()
    ids = _ids_on_primaries(redis_cluster, "campaign", per_primary=3)
    for i, campaign_id in enumerate(ids):  # each campaign its own allotment and holds
        await campaigns.load(campaign_id, _open_sale(allotted=10 + i))
        for h in range(i % 4):
            reply = await campaigns.reserve(
                campaign_id, f"m{h}", f"m{h}:k", quantity=1, fingerprint="f", hold_ttl_ms=30_000
            )
            assert reply.code is Reserve.HELD
    remaining = await campaigns.remaining_many([*ids, "absent"])
    assert remaining == [10 + i - i % 4 for i in range(len(ids))] + [None]
    in_flight = await campaigns.in_flight_many([(c, 0) for c in ids])
    assert in_flight == [(i % 4, i % 4) for i in range(len(ids))]


async def test_a_rebuild_batch_meets_noscript_on_one_primary_and_goes_again(
    redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    _, points = _gates(cluster_client)
    await points.load_scripts()
    members = _ids_on_primaries(redis_cluster, "member", per_primary=4)
    first, second = members[:6], members[6:]
    await points.mirror_many([(m, MemberMirror(100, 1, False, True)) for m in first])
    # Mid-rebuild, one primary forgets its scripts (a replica without them promoted).
    flushed = redis_cluster.primary_of(member_keys(second[0])[0])
    redis.Redis(port=flushed).script_flush()
    await points.mirror_many(
        [(m, MemberMirror(50 + i, 2, False, True)) for i, m in enumerate(second)]
    )
    assert all(redis.Redis(port=flushed).script_exists(points._settle.sha))
    for i, member_id in enumerate(second):
        port = redis_cluster.primary_of(member_keys(member_id)[0])
        state = redis.Redis(port=port, decode_responses=True).hgetall(member_keys(member_id)[0])
        assert (state["spendable"], state["ver"]) == (str(50 + i), "2"), (member_id, state)
    # The batch that went again left the first members as they were (older version: kept).
    await points.mirror_many([(m, MemberMirror(1, 1, False, True)) for m in first])
    for member_id in first:
        state = await cluster_client.hgetall(member_keys(member_id)[0])
        assert state[b"spendable"] == b"100"


async def test_the_audit_reads_members_on_every_primary(
    redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    campaigns, points = _gates(cluster_client)
    await campaigns.load_scripts()
    await points.load_scripts()
    members = _ids_on_primaries(redis_cluster, "member", per_primary=3)
    await points.mirror_many([(m, MemberMirror(100, 3, False, True)) for m in members])
    rows: list[dict[str, Any]] = [{"id": m, "spendable": 100, "version": 3} for m in members]
    wrong = members[4]  # PostgreSQL says otherwise for one member, on some primary
    rows[4] = {"id": wrong, "spendable": 90, "version": 3}
    report = AuditReport()
    await _audit_members(cast(Any, cluster_client), report, rows, settled=True)
    assert report.violations == [f"member {wrong}: Redis spendable 100 != PostgreSQL 90"]

    # Points holds on every primary, each behind a campaign hold on another primary.
    campaign_ids = list(_one_id_per_primary(redis_cluster, "campaign").values())
    for campaign_id in campaign_ids:
        await campaigns.load(campaign_id, _open_sale(allotted=100))
    for i, member_id in enumerate(members):
        campaign_id = campaign_ids[(i + 1) % len(campaign_ids)]
        hold = member_id + ":k"
        reserved = await campaigns.reserve(
            campaign_id, member_id, hold, quantity=1, fingerprint="f", hold_ttl_ms=30_000
        )
        held = await points.hold(
            member_id, hold, 10, deadline_ms=int(reserved.values[0]), campaign_id=campaign_id
        )
        assert held.code.name == "HELD"
    report = AuditReport()
    # No orphan: PostgreSQL (the pool) is never asked.
    await _audit_points_holds(cast(Any, None), cast(Any, cluster_client), report, rows, {})
    assert report.violations == []


def _time_calls(port: int) -> int:
    stats = redis.Redis(port=port).info("commandstats")
    return int(stats.get("cmdstat_time", {}).get("calls", 0))


async def test_the_clock_is_read_on_each_campaigns_own_primary_once(
    redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    on = _one_id_per_primary(redis_cluster, "campaign")
    ports = sorted(on)
    for port in ports:
        redis.Redis(port=port).config_resetstat()
    clock = RedisClock(cluster_client)
    read = []
    for port in ports[:2]:  # campaigns on two primaries, several times each
        for _ in range(3):
            read.append(await clock.now_ms(CampaignKeys(on[port]).state))
    assert clock.reads == 2
    assert [_time_calls(p) for p in ports] == [1, 1, 0]
    assert all(abs(ms - time.time() * 1000) < 5_000 for ms in read)


async def test_memory_is_read_and_warned_about_on_every_primary(
    redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    nodes = await primaries(cluster_client)
    assert len(nodes) == PRIMARIES
    found = await redis_memory.read_all(cluster_client)
    assert sorted(found) == sorted(n.name for n in nodes)
    assert all(m.limit == 256 * 1024 * 1024 and not m.evicts for m in found.values())
    assert await redis_memory.warnings(cluster_client) == []
    port = int(nodes[1].name.rsplit(":", 1)[1])
    redis.Redis(port=port).config_set("maxmemory-policy", "allkeys-lru")
    try:
        warned = await redis_memory.warnings(cluster_client)
    finally:
        redis.Redis(port=port).config_set("maxmemory-policy", "noeviction")
    assert len(warned) == 1 and warned[0].endswith(f"(Redis node {nodes[1].name})"), warned
    assert "allkeys-lru" in warned[0]


async def test_the_test_helpers_reach_every_primary(
    redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    keys = [CampaignKeys(c).state for c in _one_id_per_primary(redis_cluster, "campaign").values()]
    for key in keys:
        await cluster_client.set(key, "1")
    assert sorted(await scan_all(cluster_client, "{campaign:*")) == sorted(k.encode() for k in keys)
    flush_all("redis+cluster://" + redis_cluster.url.split("://", 1)[1])
    assert await scan_all(cluster_client) == []
