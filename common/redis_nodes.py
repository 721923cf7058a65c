"""The nodes behind a redis.asyncio client, one server (`Redis`) or a Redis Cluster
(`RedisCluster`), for the few commands that are about a node rather than a key.

On a cluster, redis-py sends `TIME`, `PING` and `INFO` to one default node, which says
nothing about the others. Here:
- `primaries` lists every primary (a standalone server is its own only "primary"), each
  with the name it is reported under (host:port);
- `RedisClock` reads Redis's clock (`TIME`) where a script reads it: on the primary that owns
  a key's hash slot, once per primary for the clock's lifetime (one sweeper pass, one audit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

# The service's Redis client, whichever the URL named (common/redis_client.client).
AnyRedis: TypeAlias = Redis | RedisCluster
# `pipeline(transaction=False)` of either: ClusterPipeline splits the commands by node, one
# round trip per node concurrently, and answers in command order, like Pipeline.
AnyPipeline: TypeAlias = Pipeline | ClusterPipeline


@dataclass(frozen=True)
class Node:
    """A primary: its name (host:port, or the socket path) and how to run a command on it
    alone (`run("INFO", "memory")`)."""

    name: str
    run: Callable[..., Awaitable[Any]]


def standalone_name(redis: Redis) -> str:
    kwargs = redis.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


async def primaries(redis: AnyRedis) -> list[Node]:
    """Every primary, in a stable order (by name)."""
    if isinstance(redis, Redis):
        return [Node(standalone_name(redis), redis.execute_command)]
    await redis.initialize()  # the slot map (a no-op once known)
    return [
        Node(node.name, _on(redis, node))
        for node in sorted(redis.get_primaries(), key=lambda n: n.name)
    ]


def _on(redis: RedisCluster, node: ClusterNode) -> Callable[..., Awaitable[Any]]:
    def run(*args: Any) -> Awaitable[Any]:
        return redis.execute_command(*args, target_nodes=node)

    return run


def _ms(reply: Any) -> int:
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


class RedisClock:
    """Redis's clock (`TIME`, in ms) as the scripts that own a key see it: reserve.lua sets a
    campaign's deadlines by its own primary's clock, so a sweeper or an audit comparing with
    them must read that primary's clock, not the default node's (a default node running X
    ahead would let the sweeper release holds up to X early: resolve.lua's expired-before
    guard compares with the clock it is given). Reads each primary once and keeps its value:
    make one per pass."""

    def __init__(self, redis: AnyRedis) -> None:
        self._redis = redis
        self._read: dict[str, int] = {}

    async def now_ms(self, key: str) -> int:
        redis = self._redis
        if isinstance(redis, Redis):
            if "" not in self._read:
                self._read[""] = _ms(await redis.time())
            return self._read[""]
        await redis.initialize()
        node = redis.get_node_from_key(key)
        if node is None:  # only asked for replicas; never here
            raise LookupError(f"no primary owns the slot of {key!r}")
        if node.name not in self._read:
            self._read[node.name] = _ms(await redis.execute_command("TIME", target_nodes=node))
        return self._read[node.name]

    @property
    def reads(self) -> int:
        """TIME commands sent so far (one per primary at most)."""
        return len(self._read)


class Script(AsyncScript):
    """redis-py's script object, but NOSCRIPT (a restarted Redis, a promoted replica's empty
    cache: Redis 7 does not replicate SCRIPT LOAD) is answered by loading the script on the
    node that owns the call's slot, one load at a time, then calling again.

    redis-py's own fallback sends SCRIPT LOAD to every primary at once from every caller
    that met NOSCRIPT; on a cluster client, dozens of callers doing so together broke
    connections other callers were using (AttributeError inside redis-py, measured with the
    bench's concurrent seeding). Same interface as AsyncScript (`sha`, `script`, awaited
    with keys and args), so the auto-pipelines take it unchanged."""

    def __init__(self, redis: AnyRedis, source: str) -> None:
        super().__init__(redis, source)
        self._loading = asyncio.Lock()

    async def __call__(  # type: ignore[override]
        self,
        keys: Sequence[Any] | None = None,
        args: Sequence[Any] | None = None,
        client: AnyRedis | None = None,
    ) -> Any:
        redis: AnyRedis = client or self.registered_client
        words = [*(keys or ()), *(args or ())]
        try:
            return await redis.evalsha(self.sha, len(keys or ()), *words)
        except NoScriptError:
            async with self._loading:
                if isinstance(redis, RedisCluster) and keys:
                    node = redis.get_node_from_key(keys[0])
                    await redis.execute_command("SCRIPT LOAD", self.script, target_nodes=node)
                else:
                    await redis.script_load(self.script)
            return await redis.evalsha(self.sha, len(keys or ()), *words)


def register_script(redis: AnyRedis, source: str) -> Script:
    return Script(redis, source)
