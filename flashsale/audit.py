"""The audit: checks every invariant of DESIGN-NOTES over PostgreSQL and Redis together.

Reusable: the tests call it after each scenario, and the load test runs it as a command
against any deployment. It only reads. `settled=True` says traffic has stopped and one sweep
has passed, so in-flight holds must be gone and Redis must equal what a rebuild would give.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from common.redis_nodes import AnyRedis, RedisClock
from flashsale import shards
from flashsale.audit_checks import PG_CHECKS
from flashsale.gate import CampaignKeys
from flashsale.model import SOLD, RedemptionStatus
from flashsale.shard_audit import audit_split_campaign
from points.gate import member_keys


@dataclass
class AuditReport:
    campaigns: int = 0
    members: int = 0
    redemptions: int = 0
    units_committed: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def fail(self, message: str) -> None:
        self.violations.append(message)


async def audit(
    pool: AsyncConnectionPool,
    redis: AnyRedis,
    *,
    settled: bool,
    stuck_after_ms: int = 0,
) -> AuditReport:
    """stuck_after_ms: a hold this long past its deadline is stuck (deadline + one sweep)."""
    report = AuditReport()
    async with pool.connection() as conn:
        for title, sql in PG_CHECKS:
            for bad in await (await conn.execute(sql)).fetchall():
                report.fail(f"{title}: {tuple(bad)}")
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT id::text, units_allotted, units_committed, units_held, version, "
            "per_member_limit, stock_shards FROM campaigns"
        )
        campaigns = await cur.fetchall()
        await cur.execute(
            "SELECT campaign_id::text, member_id::text, units_taken, version FROM campaign_members"
        )
        taken_rows = await cur.fetchall()
        await cur.execute(
            "SELECT id::text, points_balance - points_held AS spendable, version, frozen FROM members"
        )
        members = await cur.fetchall()
        await cur.execute("SELECT count(*) AS n FROM redemptions")
        counted = await cur.fetchone()
    report.campaigns, report.members = len(campaigns), len(members)
    report.redemptions = int(counted["n"]) if counted else 0
    report.units_committed = sum(c["units_committed"] for c in campaigns)

    per_campaign: dict[str, list[dict[str, Any]]] = {}
    for row in taken_rows:
        per_campaign.setdefault(row["campaign_id"], []).append(row)
    now_ms = int(time.time() * 1000)
    for campaign in campaigns:
        check = audit_split_campaign if campaign["stock_shards"] > 1 else _audit_campaign
        await check(
            redis,
            report,
            campaign,
            per_campaign.get(campaign["id"], []),
            settled=settled,
            now_ms=now_ms,
            stuck_after_ms=stuck_after_ms,
        )
    await _audit_members(redis, report, members, settled=settled)
    split = {c["id"]: c["stock_shards"] for c in campaigns}
    await _audit_points_holds(pool, redis, report, members, split)
    return report


async def _audit_campaign(
    redis: AnyRedis,
    report: AuditReport,
    pg: dict[str, Any],
    members: list[dict[str, Any]],
    *,
    settled: bool,
    now_ms: int,
    stuck_after_ms: int,
) -> None:
    k = CampaignKeys(pg["id"])
    state = await redis.hgetall(k.state)
    if not state:
        return  # not loaded: nothing in Redis to disagree (it loads lazily)
    s = {
        _str(a): int(b)
        for a, b in state.items()
        if _str(a) in {"allotted", "taken", "tver", "held"}
    }
    name = f"campaign {pg['id']}"
    taken_pg = pg["units_committed"] + pg["units_held"]
    if s["allotted"] != pg["units_allotted"]:
        report.fail(f"{name}: Redis allotted {s['allotted']} != PostgreSQL {pg['units_allotted']}")
    if s["taken"] + s["held"] > s["allotted"]:
        report.fail(f"{name}: Redis taken {s['taken']} + held {s['held']} > allotted")
    if s["held"] < 0:
        report.fail(f"{name}: Redis held {s['held']} < 0")
    if s["tver"] > pg["version"]:
        report.fail(f"{name}: Redis mirror version {s['tver']} ahead of PostgreSQL {pg['version']}")
    if s["tver"] == pg["version"] and s["taken"] != taken_pg:
        report.fail(f"{name}: Redis taken {s['taken']} != PostgreSQL {taken_pg} at one version")

    deadlines: list[tuple[bytes, float]] = await redis.zrange(  # type: ignore[assignment]
        k.deadlines, 0, -1, withscores=True
    )
    held_sum = 0
    for hold, deadline in deadlines:
        qty = await redis.hget(k.record(_str(hold)), "qty")
        held_sum += int(qty or 0)
        if stuck_after_ms and deadline + stuck_after_ms < now_ms:
            report.fail(
                f"{name}: hold {_str(hold)} stuck {now_ms - deadline:.0f} ms past its deadline"
            )
    if held_sum != s["held"]:
        report.fail(f"{name}: Redis held {s['held']} != sum of its holds {held_sum}")

    redis_taken = {_str(a): int(b) for a, b in (await redis.hgetall(k.taken)).items()}
    redis_tver = {_str(a): int(b) for a, b in (await redis.hgetall(k.tver)).items()}
    for row in members:
        member, version = row["member_id"], row["version"]
        if redis_tver.get(member, 0) == version and redis_taken.get(member) != row["units_taken"]:
            report.fail(f"{name}: member {member} taken differs between Redis and PostgreSQL")
        if settled and redis_tver.get(member, 0) != version:
            report.fail(f"{name}: member {member} taken mirror is behind after settling")
    if settled:
        if s["held"] != 0:
            report.fail(f"{name}: {s['held']} units still held after settling")
        if s["tver"] != pg["version"] or s["taken"] != taken_pg:
            report.fail(f"{name}: Redis taken {s['taken']} differs from a rebuild ({taken_pg})")


async def _audit_members(
    redis: AnyRedis, report: AuditReport, members: list[dict[str, Any]], *, settled: bool
) -> None:
    for start in range(0, len(members), 500):
        chunk = members[start : start + 500]
        pipe = redis.pipeline(transaction=False)  # on a cluster: one round trip per primary
        for row in chunk:
            state_key, holds_key, _ = member_keys(row["id"])
            pipe.hgetall(state_key)
            pipe.hvals(holds_key)
        replies = await pipe.execute()
        for i, row in enumerate(chunk):
            state, holds = replies[2 * i], replies[2 * i + 1]
            if not state:
                continue
            s = {_str(a): int(b) for a, b in state.items()}
            name = f"member {row['id']}"
            held_sum = sum(int(h) for h in holds)
            if s["held"] != held_sum:
                report.fail(f"{name}: Redis held {s['held']} != sum of its holds {held_sum}")
            if s["spendable"] - s["held"] < 0:
                report.fail(f"{name}: Redis available {s['spendable'] - s['held']} < 0")
            if s["ver"] > row["version"]:
                report.fail(f"{name}: Redis mirror version ahead of PostgreSQL")
            if s["ver"] == row["version"] and s["spendable"] != row["spendable"]:
                report.fail(
                    f"{name}: Redis spendable {s['spendable']} != PostgreSQL {row['spendable']}"
                )
            if settled and (s["held"] != 0 or s["ver"] != row["version"]):
                report.fail(f"{name}: Redis differs from a rebuild after settling")


async def _audit_points_holds(
    pool: AsyncConnectionPool,
    redis: AnyRedis,
    report: AuditReport,
    members: list[dict[str, Any]],
    split: dict[str, int],  # campaign id -> stock shards
) -> None:
    """Every points hold still in force has a campaign hold or a committed redemption
    behind it. A lapsed one counts for nothing (hold.lua drops it before it refuses anyone),
    so it is not a violation; one in force with nothing behind it keeps points locked."""
    clock = RedisClock(redis)  # a deadline is by its campaign's primary's clock (hold.lua)
    orphans: list[tuple[str, str, str]] = []  # (member, key, campaign)
    for start in range(0, len(members), 500):
        chunk = members[start : start + 500]
        pipe = redis.pipeline(transaction=False)
        for row in chunk:
            pipe.hgetall(member_keys(row["id"])[2])
        for row, info in zip(chunk, await pipe.execute(), strict=True):
            for hold_b, what in info.items():
                hold, (deadline, campaign_id) = _str(hold_b), _str(what).split(":", 1)
                if int(deadline) < await clock.now_ms(CampaignKeys(campaign_id).state):
                    continue
                where = shards.home(campaign_id, row["id"], split.get(campaign_id, 1))
                state = await redis.hget(CampaignKeys(where).record(hold), "state")
                if _str(state) != "held":
                    orphans.append((row["id"], hold.split(":", 1)[1], campaign_id))
    if not orphans:
        return
    async with pool.connection() as conn:
        for member_id, key, campaign_id in orphans:
            cur = await conn.execute(
                "SELECT 1 FROM redemptions WHERE member_id = %s AND idempotency_key = %s "
                "AND campaign_id = %s",
                (member_id, key, campaign_id),
            )
            if await cur.fetchone() is None:
                report.fail(
                    f"member {member_id}: points hold {key} in force with neither a hold nor "
                    f"a redemption of campaign {campaign_id} behind it"
                )


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- What clients were told: the load test records every OK it receives -----------------


@dataclass(frozen=True)
class RecordedOk:
    """One OK answer a client received, as the load test writes it (a JSON object per line).

    `status` is the redemption's status in that answer (Redeem, ConfirmPayment or
    CancelRedemption); `campaign_id` and `quantity` are checked when present."""

    redemption_id: str
    member_id: str
    idempotency_key: str
    status: str = ""
    campaign_id: str = ""
    quantity: int = 0


# Where a redemption may be now, given a status a client was once told.
# Sold ones move on along the physical path (flashsale/fulfilment.py) or are cancelled
# before shipping; the load test's clients are told only the first four.
_SOLD_OR_CANCELLED = frozenset({s.value for s in SOLD} | {RedemptionStatus.CANCELLED.value})
_REACHABLE_FROM: dict[str, frozenset[str]] = {
    "PENDING_PAYMENT": _SOLD_OR_CANCELLED | {"PENDING_PAYMENT", "EXPIRED"},
    "COMMITTED": _SOLD_OR_CANCELLED,
    "CANCELLED": frozenset({"CANCELLED"}),
    "EXPIRED": frozenset({"EXPIRED"}),
}
_ANY_STATUS = _REACHABLE_FROM["PENDING_PAYMENT"]


def load_recorded(paths: Iterable[Path]) -> list[RecordedOk]:
    """Reads recorded OKs from JSON-lines files, or from every `*.jsonl` in a directory."""
    names = {f.name for f in fields(RecordedOk)}
    records: list[RecordedOk] = []
    for path in paths:
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        for file in files:
            for number, line in enumerate(file.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                    record = RecordedOk(**{k: v for k, v in data.items() if k in names})
                    uuid.UUID(record.redemption_id)
                    uuid.UUID(record.member_id)
                except (ValueError, TypeError, AttributeError) as e:
                    raise ValueError(f"{file}:{number}: not a recorded OK: {e}") from None
                records.append(record)
    return records


async def check_recorded(pool: AsyncConnectionPool, records: Sequence[RecordedOk]) -> list[str]:
    """Every OK a client received names a redemption PostgreSQL holds exactly once under
    that member and key, with the same id (and campaign and quantity), in a status reachable
    from what the client was told. Independent of the UNIQUE constraint: it counts rows."""
    violations: list[str] = []
    by_key: dict[tuple[str, str], list[RecordedOk]] = {}
    for record in records:
        by_key.setdefault((record.member_id, record.idempotency_key), []).append(record)
    found: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    keys = list(by_key)
    async with pool.connection() as conn:
        for start in range(0, len(keys), 5_000):
            chunk = keys[start : start + 5_000]
            cur = await conn.execute(
                "SELECT r.member_id::text, r.idempotency_key, r.id::text, r.status, "
                "r.campaign_id::text, r.quantity FROM redemptions r "
                "JOIN unnest(%s::uuid[], %s::text[]) AS k(member_id, key) "
                "ON r.member_id = k.member_id AND r.idempotency_key = k.key",
                ([m for m, _ in chunk], [k for _, k in chunk]),
            )
            for row in await cur.fetchall():
                found.setdefault((row[0], row[1]), []).append(tuple(row))
    for (member, key), told in by_key.items():
        name = f"recorded OK (member {member}, key {key!r})"
        ids = sorted({r.redemption_id for r in told})
        if len(ids) > 1:
            violations.append(f"{name}: one key answered with {len(ids)} redemptions {ids}")
        rows = found.get((member, key), [])
        if len(rows) != 1:
            violations.append(f"{name}: redemption {ids[0]} found {len(rows)} times in PostgreSQL")
            continue
        _, _, pg_id, status, campaign, quantity = rows[0]
        for record in told:
            if record.redemption_id != pg_id:
                violations.append(f"{name}: told {record.redemption_id}, PostgreSQL has {pg_id}")
            if (record.campaign_id and record.campaign_id != campaign) or (
                record.quantity and record.quantity != quantity
            ):
                violations.append(f"{name}: campaign or quantity differ from PostgreSQL")
        allowed = _ANY_STATUS
        for record in told:
            allowed = allowed & _REACHABLE_FROM.get(record.status, _ANY_STATUS)
        if status not in allowed:
            seen = sorted({r.status for r in told if r.status})
            violations.append(f"{name}: client was told {seen}, PostgreSQL has {status}")
    return violations
