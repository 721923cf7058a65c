"""redis-py 8.1's asyncio RedisCluster closed connections other tasks were using (its own
resets on MOVED, on connection errors in pipelines, on freeing connections after an error):
common/redis_cluster_fixes.py. Both ways it showed, bounded in time: many tasks on a fresh
client (MOVED replies while it learns the slot map), and a long-lived client whose
connections Redis kills (CLIENT KILL, as a restart or a proxy would) under load. The only
errors allowed are Redis's own connection errors (UNAVAILABLE at the edge), never an
exception from inside redis-py."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
import redis.asyncio
import redis.exceptions
from redis.asyncio import RedisCluster
from redis.asyncio.retry import Retry  # an asyncio client's (redis-py 8.2 warns on the other)
from redis.backoff import NoBackoff

from common import redis_client
from tests.local_cluster import LocalCluster

WORKERS = 64


async def _one(client: RedisCluster, key: str, value: int) -> None:
    await client.hset(key, mapping={"a": value})
    pipe = client.pipeline(transaction=False)
    pipe.hmget(key, "a")
    pipe.zcard(key + ":z")
    pipe.hmget(key + "x", "a")
    first, _, _ = await pipe.execute()
    assert first == [str(value).encode()]
    assert await client.hget(key, "a") == str(value).encode()


def _unexpected(errors: list[BaseException]) -> Counter[str]:
    """Errors that are not Redis saying its connection failed."""
    allowed = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    return Counter(f"{type(e).__name__}: {e}" for e in errors if not isinstance(e, allowed))


async def test_many_tasks_on_a_fresh_cluster_client(redis_cluster: LocalCluster) -> None:
    """As App.start does: the slot map first (an uninitialised client sends commands to
    random primaries, and the MOVED storm that follows reset its connections)."""
    errors: list[BaseException] = []
    for round_ in range(8):
        client = redis_client.client(redis_cluster.service_url, max_connections=256)
        assert isinstance(client, RedisCluster)
        await client.initialize()
        results = await asyncio.gather(
            *(_one(client, "{race:" + f"{round_}:{i}" + "}", i) for i in range(WORKERS)),
            return_exceptions=True,
        )
        errors += [r for r in results if isinstance(r, BaseException)]
        await client.aclose()
    assert errors == []


async def test_connections_killed_under_load(redis_cluster: LocalCluster) -> None:
    client = redis_client.client(redis_cluster.service_url, max_connections=256)
    assert isinstance(client, RedisCluster)
    await client.initialize()
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def worker(i: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                await _one(client, "{kill:" + f"{i}:{n % 20}" + "}", n)
            except Exception as e:  # counted, judged below
                errors.append(e)

    primaries = [
        redis.asyncio.Redis(host=node.host, port=int(node.port)) for node in client.get_primaries()
    ]
    tasks = [asyncio.create_task(worker(i)) for i in range(WORKERS)]
    try:
        for _ in range(30):
            await asyncio.sleep(0.05)
            await random.choice(primaries).execute_command(  # type: ignore[no-untyped-call]
                "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"
            )
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for admin in primaries:
            await admin.aclose()
        await client.aclose()
    assert _unexpected(errors) == Counter()


async def test_close_after_a_connection_error_closes_every_connection(
    redis_cluster: LocalCluster,
) -> None:
    """redis-py flags a cluster client for re-initialisation when a command fails on a
    connection error, and its `aclose()` did nothing while that flag was up: a server shut
    down after a Redis hiccup left every connection open (a ResourceWarning that failed CI
    once in five runs of the test above)."""
    client = redis_client.client(redis_cluster.service_url, retry=Retry(NoBackoff(), 0))
    assert isinstance(client, RedisCluster)
    await client.initialize()
    await client.set("{close}:k", "v")
    node = client.get_node_from_key("{close}:k")
    assert node is not None
    admin = redis.asyncio.Redis(host=node.host, port=int(node.port))
    try:
        await admin.execute_command(  # type: ignore[no-untyped-call]
            "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"
        )
    finally:
        await admin.aclose()
    with pytest.raises(redis.exceptions.ConnectionError):
        await client.get("{close}:k")
    connections = [c for n in client.get_nodes() for c in n._connections]
    await client.aclose()
    assert connections and not any(c.is_connected for c in connections)
