"""NOSCRIPT met by many callers at once on a cluster (a promoted replica's empty script
cache: Redis 7 does not replicate SCRIPT LOAD). redis-py's own fallback had every caller
send SCRIPT LOAD to every primary at once, and on its cluster client that broke connections
other callers were using (AttributeError from inside redis-py: an INTERNAL answer). The
gates' scripts (common.redis_nodes.Script) load on the one node that said NOSCRIPT, one
load at a time."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import redis

from inventory.items import ItemKind
from server.app import App, Stores
from tests.conftest import TEST_SETTINGS
from tests.local_cluster import LocalCluster

CAMPAIGNS = 64


async def test_campaigns_created_at_once_each_load_their_scripts_on_their_node(
    clean: Stores, redis_cluster: LocalCluster
) -> None:
    for port in redis_cluster.ports:  # no script anywhere, as after a failover
        redis.Redis(port=port).script_flush()
    app = App(TEST_SETTINGS, Stores(clean.database_url, redis_cluster.service_url))
    await app.pool.open(wait=True, timeout=30)
    starts = datetime.now(UTC) - timedelta(minutes=1)

    async def campaign() -> str:
        item = await app.catalog.create_item(
            sku="storm-" + uuid.uuid4().hex[:12], name="x", kind=ItemKind.VIRTUAL, initial_stock=5
        )
        created = await app.campaigns.create(
            item_id=item.id,
            name="storm",
            units_allotted=5,
            points_price=1,
            cash_price_cents=0,
            per_member_limit=1,
            starts_at=starts,
            ends_at=starts + timedelta(hours=1),
        )
        return created.meta.id

    try:
        ids = await asyncio.gather(*(campaign() for _ in range(CAMPAIGNS)))
        assert len(set(ids)) == CAMPAIGNS
        for campaign_id in ids:  # each loaded into its slot's primary
            state = await app.redis.hget("{campaign:" + campaign_id + "}", "allotted")
            assert state == b"5"
    finally:
        await app.redis.aclose()
        await app.calls.aclose()
        await app.pool.close()
