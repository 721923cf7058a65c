"""Start-up's and readiness's Redis checks on a real cluster (issue 14, item 7): every primary
answers with cluster_state:ok and accepts SCRIPT LOAD, else one line naming the node. The
destructive cases (slots dropped, a primary killed) run on a cluster of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

from common.redis_client import client, sync_client
from common.redis_health import RedisUnhealthy, acheck, check
from server.app import Stores
from server.startup import StartupError, wait_for_stores
from tests.local_cluster import LocalCluster, local_cluster


def _url(cluster: LocalCluster) -> str:
    return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in cluster.nodes[:2])


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    with local_cluster() as cluster:
        yield cluster


async def test_a_healthy_cluster_passes_both_checks(
    redis_cluster: LocalCluster, stores: Stores
) -> None:
    wait_for_stores(Stores(stores.database_url, _url(redis_cluster)), 5)
    probe = client(_url(redis_cluster))
    try:
        await acheck(probe)
    finally:
        await probe.aclose()


def test_a_primary_refusing_script_load_is_named(redis_cluster: LocalCluster) -> None:
    port = redis_cluster.primary_of("{x}")
    admin = redis.Redis(port=port)
    admin.acl_setuser("default", enabled=True, commands=["-script|load"])
    sync = sync_client(_url(redis_cluster))
    try:
        with pytest.raises(RedisUnhealthy, match=rf"^node 127\.0\.0\.1:{port} refuses SCRIPT LOAD"):
            check(sync, script_load=True)
        check(sync, script_load=False)  # it still answers
    finally:
        admin.acl_setuser("default", enabled=True, commands=["+script|load"])
        sync.close()


async def test_a_node_without_its_slots_then_a_dead_one_are_named(
    own_cluster: LocalCluster, stores: Stores
) -> None:
    url = _url(own_cluster)
    port = own_cluster.primary_of("{a}")
    owner = redis.Redis(port=port)
    slot = key_slot(b"{a}")
    owner.cluster("DELSLOTS", slot)
    try:
        sync = sync_client(url)
        try:
            with pytest.raises(
                RedisUnhealthy, match=rf"^node 127\.0\.0\.1:{port} reports cluster_state:fail"
            ):
                check(sync, script_load=False)
        finally:
            sync.close()
        probe = client(url)
        with pytest.raises(RedisUnhealthy, match=rf"node 127\.0\.0\.1:{port} reports"):
            await acheck(probe)
        await probe.aclose()
    finally:
        owner.cluster("ADDSLOTS", slot)
    # A primary killed (before any failover): start-up gives up with one line naming it.
    own_cluster._processes[own_cluster.ports.index(port)].kill()
    with pytest.raises(StartupError) as raised:
        wait_for_stores(Stores(stores.database_url, url), 1.5, sleep=lambda _: None)
    message = str(raised.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message, message
    # (The async check of a dead node is not run here: redis-py's asyncio RedisCluster then
    # drops the node from its map without closing its connection, a ResourceWarning that
    # this suite turns into an error at the end of the session.)
