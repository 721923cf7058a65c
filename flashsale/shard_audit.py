"""The audit's checks of a split campaign (flashsale/shards.py), called by flashsale/audit.py.

Per shard, the checks a one-slot campaign gets (taken + held <= allotted, held = the sum of
its holds, no hold stuck, members' mirrors agree on their home shard). Across shards, against
PostgreSQL: the shards' allotments plus the units in transit add up to the campaign's; the
units the shards handed to PostgreSQL never exceed what it counts as taken; and once settled
nothing is held and every unit PostgreSQL took is counted by a shard."""

from __future__ import annotations

from typing import Any, Protocol

from common.redis_nodes import AnyRedis
from flashsale import shards
from flashsale.gate import CampaignKeys


class Report(Protocol):
    def fail(self, message: str) -> None: ...


async def audit_split_campaign(
    redis: AnyRedis,
    report: Report,
    pg: dict[str, Any],
    members: list[dict[str, Any]],
    *,
    settled: bool,
    now_ms: int,
    stuck_after_ms: int,
) -> None:
    k = int(pg["stock_shards"])
    name = f"campaign {pg['id']}"
    total_allotted = total_taken = total_transit = 0
    loaded = 0
    for index in range(k):
        keys = CampaignKeys(shards.slot(pg["id"], index))
        state = {_str(a): _str(b) for a, b in (await redis.hgetall(keys.state)).items()}
        if not state:
            continue
        loaded += 1
        where = f"{name} shard {index}"
        allotted, taken, held = (int(state[f]) for f in ("allotted", "taken", "held"))
        total_allotted += allotted
        total_taken += taken
        if taken + held > allotted or held < 0:
            report.fail(f"{where}: Redis taken {taken} + held {held} > allotted {allotted}")
        holds: list[tuple[bytes, float]] = await redis.zrange(  # type: ignore[assignment]
            keys.deadlines, 0, -1, withscores=True
        )
        held_sum = 0
        for hold, deadline in holds:
            held_sum += int(await redis.hget(keys.record(_str(hold)), "qty") or 0)
            if stuck_after_ms and deadline + stuck_after_ms < now_ms:
                report.fail(f"{where}: hold {_str(hold)} stuck past its deadline")
        if held_sum != held:
            report.fail(f"{where}: Redis held {held} != sum of its holds {held_sum}")
        for transfer in await redis.zrange(keys.tag + ":transfers", 0, -1):
            total_transit += int(await redis.hget(keys.tag + ":x:" + _str(transfer), "n") or 0)
        if settled and held:
            report.fail(f"{where}: {held} units still held after settling")
        redis_taken = {_str(a): int(b) for a, b in (await redis.hgetall(keys.taken)).items()}
        redis_tver = {_str(a): int(b) for a, b in (await redis.hgetall(keys.tver)).items()}
        for row in members:
            if shards.home_index(row["member_id"], k) != index:
                continue
            version = redis_tver.get(row["member_id"], 0)
            if (
                version == row["version"]
                and redis_taken.get(row["member_id"]) != row["units_taken"]
            ):
                report.fail(f"{where}: member {row['member_id']} taken differs from PostgreSQL")
    if loaded < k:
        if loaded:
            report.fail(f"{name}: {k - loaded} of its {k} stock shards are not loaded")
        return
    taken_pg = pg["units_committed"] + pg["units_held"]
    if total_allotted + total_transit != pg["units_allotted"]:
        report.fail(
            f"{name}: shards' allotments {total_allotted} + in transit {total_transit} != "
            f"PostgreSQL allotted {pg['units_allotted']}"
        )
    if total_taken > taken_pg:
        report.fail(f"{name}: shards took {total_taken} units, PostgreSQL counts {taken_pg}")
    if settled and total_taken != taken_pg:
        report.fail(f"{name}: shards took {total_taken} != PostgreSQL {taken_pg} after settling")


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
