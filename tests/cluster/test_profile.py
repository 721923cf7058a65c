"""`make test-cluster` really runs the service on the cluster: a guard against a profile that
silently falls back to the single Redis (and so would test nothing new)."""

from __future__ import annotations

import pytest
from redis.asyncio import RedisCluster

from common.autopipeline_cluster import ClusterAutoPipeline
from tests.conftest import CLUSTER_PROFILE, Running


@pytest.mark.skipif(not CLUSTER_PROFILE, reason="checks the cluster profile (make test-cluster)")
async def test_the_cluster_profile_serves_from_the_cluster(server: Running) -> None:
    assert server.app.stores.redis_url.startswith("redis+cluster://")
    assert isinstance(server.app.redis, RedisCluster)
    assert isinstance(server.app.calls, ClusterAutoPipeline)
    campaign = await server.api.campaign(units=3)
    member = await server.api.member(points=1_000)
    await server.api.redeem(member.id, campaign.id)
    assert await server.app.redis.exists("{campaign:" + campaign.id + "}") == 1
