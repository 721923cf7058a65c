"""A workaround for redis-py 8.1's asyncio RedisCluster closing connections other tasks are
using, and leaving them open on close (no redis-py file is edited; two `ClusterNode` methods
and `RedisCluster.aclose` are replaced, once).

What goes wrong (redis/asyncio/cluster.py, 8.1.0):
- `ClusterNode.disconnect` closes every connection of the node, busy ones included. redis-py
  reaches it through `RedisCluster.aclose()`, which it calls itself as a reset: every 5th
  MOVED, on CLUSTERDOWN / an uncovered slot, and on any connection error or timeout inside a
  cluster pipeline. The task that held the connection then fails inside redis-py
  (`AttributeError: 'NoneType' object has no attribute 'writelines'` while connecting, or
  "Connection closed by server" while reading): an INTERNAL answer for a Redis hiccup.
- `ClusterNode.disconnect_free_connections` (after any connection error) starts closing the
  free connections on a later loop turn while leaving them free, so another task can take
  one and have it closed under it.

Measured with a 3+3 cluster and 64 concurrent workers: a fresh client failed 5 to 13
rounds out of 20, a long-lived one had 12 to 49 such errors per burst of MOVED replies or
killed connections; with this, none (tests/cluster/test_redis_py_races.py).

The replacements never close a connection another task holds: free connections are taken
out of the free list while they close (so no task can take one meanwhile), busy ones are marked (`mark_for_reconnect`) so
that their holder closes them when it releases them, as redis-py already does for its own
maintenance notifications. A real `aclose()` therefore lets in-flight commands finish.

`RedisCluster.aclose` itself did nothing while the client was flagged for re-initialisation,
which a command failing on a connection error sets: a server shut down after a Redis hiccup
left every connection open for the garbage collector (a ResourceWarning that failed CI once
in five runs of tests/cluster/test_redis_py_races.py). The replacement closes the nodes then
too.
"""

from __future__ import annotations

import asyncio

from redis.asyncio.cluster import ClusterNode, RedisCluster

_applied = False


async def _close_idle(node: ClusterNode) -> list[BaseException | None]:
    """Closes the node's free connections, out of the free list while they close (so no
    task can take one meanwhile); they go back closed and reconnect on their next use."""
    idle = list(node._free)
    node._free.clear()
    try:
        return await asyncio.gather(*(c.disconnect() for c in idle), return_exceptions=True)
    finally:
        node._free.extend(idle)


async def _disconnect_free_connections(self: ClusterNode) -> None:
    await _close_idle(self)


async def _disconnect_idle_mark_busy(self: ClusterNode) -> None:
    free = {id(c) for c in self._free}
    for connection in self._connections:
        if id(connection) not in free:
            connection.mark_for_reconnect()  # type: ignore[no-untyped-call]  # closed by its holder
    failed = next((r for r in await _close_idle(self) if isinstance(r, Exception)), None)
    if failed is not None:
        raise failed


_cluster_aclose = RedisCluster.aclose


async def _aclose_even_when_flagged(self: RedisCluster) -> None:
    if self._initialize:  # flagged after a connection error: redis-py would skip the close
        await self.nodes_manager.aclose()
        await self.nodes_manager.aclose("startup_nodes")
        return
    await _cluster_aclose(self)


def apply() -> None:
    """Idempotent; called before the first cluster client is built."""
    global _applied
    if _applied:
        return
    ClusterNode.disconnect_free_connections = _disconnect_free_connections  # type: ignore[method-assign]
    ClusterNode.disconnect = _disconnect_idle_mark_busy  # type: ignore[method-assign]
    RedisCluster.aclose = _aclose_even_when_flagged  # type: ignore[method-assign]
    _applied = True
