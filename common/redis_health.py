"""Is Redis able to serve the gate: one server answers PING; a Redis Cluster answers on every
primary with `cluster_state:ok` (CLUSTER INFO, which doubles as that primary's PING), so a
cluster that lost a shard or a node is not taken for healthy. Start-up also checks that every
primary accepts SCRIPT LOAD (the gates load their scripts there). A failure is
`RedisUnhealthy`, one line naming the node (host:port)."""

from __future__ import annotations

from typing import Any

import redis
import redis.cluster
from redis.asyncio import Redis

from common.redis_nodes import AnyRedis, primaries

PROBE_SCRIPT = "return 1"


class RedisUnhealthy(Exception):
    """Redis cannot serve; the message is one line and names the node."""


def _state(info: Any) -> str:
    if isinstance(info, dict):
        return str(info.get("cluster_state", ""))
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return ""


def _fail(node: str, what: str, e: BaseException) -> RedisUnhealthy:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    reason = lines[0] if lines else type(e).__name__
    return RedisUnhealthy(f"node {node} {what}: {reason}")


def check(client: redis.Redis | redis.cluster.RedisCluster, *, script_load: bool) -> None:
    """Blocking (start-up): PING, or on a cluster CLUSTER INFO on every primary; then SCRIPT
    LOAD of a trivial script on each when `script_load`."""
    if isinstance(client, redis.Redis):
        kw = client.connection_pool.connection_kwargs
        nodes: list[tuple[str, Any]] = [(f"{kw.get('host')}:{kw.get('port')}", None)]
    else:
        nodes = [(n.name, n) for n in sorted(client.get_primaries(), key=lambda n: n.name)]  # type: ignore[no-untyped-call]
    for name, node in nodes:
        target = {} if node is None else {"target_nodes": node}
        try:
            if node is None:
                client.ping()
            elif (state := _state(client.execute_command("CLUSTER INFO", **target))) != "ok":  # type: ignore[no-untyped-call]
                raise RedisUnhealthy(f"node {name} reports cluster_state:{state or '?'}")
        except redis.RedisError as e:
            raise _fail(name, "does not answer", e) from e
        if script_load:
            try:
                client.execute_command("SCRIPT LOAD", PROBE_SCRIPT, **target)  # type: ignore[no-untyped-call]
            except redis.RedisError as e:
                raise _fail(name, "refuses SCRIPT LOAD", e) from e


async def acheck(client: AnyRedis) -> None:
    """The same without SCRIPT LOAD, for the readiness probe (every second)."""
    nodes = await primaries(client)
    for node in nodes:
        try:
            if isinstance(client, Redis):
                await node.run("PING")
            elif (state := _state(await node.run("CLUSTER INFO"))) != "ok":
                raise RedisUnhealthy(f"node {node.name} reports cluster_state:{state or '?'}")
        except redis.RedisError as e:
            raise _fail(node.name, "does not answer", e) from e
