"""Redis from tests, a single server or a cluster alike, so the same tests can later run
against a Redis Cluster (docs/design.md, "Redis Cluster: what is left", item 8)."""

from __future__ import annotations

import redis
import redis.cluster

from common import redis_client
from common.redis_nodes import AnyRedis


def sync_client(url: str) -> redis.Redis | redis.cluster.RedisCluster:
    """A blocking client for the URL: a RedisCluster for `redis+cluster://`."""
    return redis_client.sync_client(url)


def flush_all(url: str) -> None:
    """FLUSHALL: on a cluster client redis-py sends it to every primary."""
    client = sync_client(url)
    try:
        client.flushall()
    finally:
        client.close()


async def scan_all(client: AnyRedis, pattern: str = "*") -> list[bytes]:
    """Every key matching `pattern`: on a cluster, redis-py's scan_iter runs one SCAN cursor
    per primary (never the default node alone)."""
    return [key async for key in client.scan_iter(match=pattern, count=1000)]
