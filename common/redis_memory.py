"""Redis's memory as the gate needs it: a limit (maxmemory) and a policy that never evicts.

Every gate key has an expiry now (docs/design.md, "Every key has an end"), so any eviction
policy, volatile-* included, may drop a live counter or hold; only `noeviction` keeps them,
and answers writes with OOM when full (which Surge turns into UNAVAILABLE, after any commit
has been answered). Without a maxmemory the kernel's OOM killer decides instead.

On a Redis Cluster every primary holds its own share of the gate, with its own limit and
policy: `read_all` reads each (INFO memory on that node), and `warnings` names the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.redis_nodes import AnyRedis, primaries

SAFE_POLICY = "noeviction"


@dataclass(frozen=True)
class RedisMemory:
    used: int
    limit: int  # maxmemory; 0 = none
    policy: str

    @property
    def evicts(self) -> bool:
        return self.policy != SAFE_POLICY

    def warnings(self) -> list[str]:
        found = []
        if self.evicts:
            found.append(
                f"Redis maxmemory-policy is {self.policy}: when full it may evict live gate "
                f"keys (counters, holds); set it to {SAFE_POLICY}"
            )
        if self.limit == 0:
            found.append(
                "Redis has no maxmemory: when the host runs out, the kernel kills it; set "
                "maxmemory (with noeviction) and watch surge_redis_memory_bytes"
            )
        return found


async def read_all(redis: AnyRedis) -> dict[str, RedisMemory]:
    """Every primary's memory, by node name (host:port); one entry for a single server."""
    return {node.name: _parse(await node.run("INFO", "memory")) for node in await primaries(redis)}


async def warnings(redis: AnyRedis) -> list[str]:
    """What is unsafe about any primary's memory settings, each line naming the node."""
    return [
        f"{warning} (Redis node {name})"
        for name, memory in (await read_all(redis)).items()
        for warning in memory.warnings()
    ]


def _parse(info: dict[str, Any]) -> RedisMemory:
    return RedisMemory(
        used=int(info.get("used_memory", 0)),
        limit=int(info.get("maxmemory", 0)),
        policy=str(info.get("maxmemory_policy", "")),
    )
