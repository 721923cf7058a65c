"""Tiers: the rules, as pure functions (which tier a member holds now, what an evaluation
changes), then Tiers, which applies them to members in PostgreSQL: SetManualTier,
EvaluateTier, the daily evaluation of every member, and a member's tier status.

- Qualifying points: points earned (by purchase, task or EarnPoints, less their reversals)
  over the rolling window (SURGE_TIER_WINDOW_MONTHS, start exclusive), never the balance.
- An evaluation that finds the qualifying points at or above a tier's threshold grants the
  highest such tier until now + SURGE_TIER_KEEP_MONTHS (re-qualifying extends it). A tier
  reached earlier is kept until then even if the points fall below its threshold.
- A manually assigned tier is a floor: the member holds the higher of the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

import auditlog
from common import validation
from common.errors import InvalidArgument, NotFound
from points import context, store
from points.context import Context
from points.model import TierStatus
from points.program import Program, Tier, add_months, utc_now, window_start
from points.store import Cursor


@dataclass(frozen=True)
class TierState:
    """What PostgreSQL keeps per member."""

    tier: str | None
    valid_until: datetime | None
    manual: str | None


@dataclass(frozen=True)
class CurrentTier:
    tier: Tier
    valid_until: datetime | None  # None: the first tier, or held by the manual floor


def reached_level(program: Program, state: TierState, now: datetime) -> int:
    if state.tier is None or state.valid_until is None or state.valid_until <= now:
        return 0
    return program.level(state.tier)


def current(program: Program, state: TierState, now: datetime) -> CurrentTier:
    reached = reached_level(program, state, now)
    manual = program.level(state.manual) if state.manual else 0
    if manual > reached:
        return CurrentTier(program.tiers[manual], None)
    if reached == 0:
        return CurrentTier(program.tiers[0], None)
    return CurrentTier(program.tiers[reached], state.valid_until)


def evaluate(program: Program, state: TierState, qualifying: int, now: datetime) -> TierState:
    """The state after an evaluation at `now` with these qualifying points."""
    earned = program.tiers.index(program.tier_for(qualifying))
    if earned > 0 and earned >= reached_level(program, state, now):
        until = add_months(now, program.tier_keep_months)
        return TierState(program.tiers[earned].name, until, state.manual)
    if reached_level(program, state, now) > 0:
        return state  # kept until valid_until
    return TierState(None, None, state.manual)


def state_of(row: dict[str, Any]) -> TierState:
    """The tier state of a members row (store.MEMBER_STATE)."""
    return TierState(row["tier"], row["tier_valid_until"], row["manual_tier"])


class Tiers:
    def __init__(self, ctx: Context) -> None:
        self._pool, self._program = ctx.pool, ctx.program

    async def set_manual_tier(
        self, *, member_id: str, tier: str, reason: str, operator_id: str
    ) -> TierStatus:
        """An operator's floor ("" clears it)."""
        member_id = validation.uuid_id("member_id", member_id)
        if tier and self._program.tier(tier) is None:
            names = ", ".join(t.name for t in self._program.tiers)
            raise InvalidArgument("tier", f"must be one of {names} (or empty to clear)")
        reason = context.reason(reason)
        operator = context.operator_id(operator_id, required=True)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await store.lock_members(cur, member_id)
            await cur.execute(
                "UPDATE members SET manual_tier = nullif(%s, '') WHERE id = %s", (tier, member_id)
            )
            await cur.execute(
                "INSERT INTO member_actions (member_id, action, detail, reason, operator_id) "
                "VALUES (%s, 'manual_tier', %s, %s, %s)",
                (member_id, tier, reason, operator),
            )
            await auditlog.record(
                conn,
                auditlog.SET_MANUAL_TIER,
                target_kind=auditlog.MEMBER,
                target_id=member_id,
                content={
                    "member_id": member_id,
                    "tier": tier,
                    "reason": reason,
                    "operator_id": operator,
                },
            )
        return await self.tier_status(member_id)

    async def evaluate_tier(self, *, member_id: str, now: datetime | None = None) -> TierStatus:
        """An operator's evaluation now. It writes an audit event when it changes the
        member's reached tier or how long it is kept (re-qualifying extends it); one that
        leaves both as they were writes none."""
        member_id = validation.uuid_id("member_id", member_id)
        now = now or utc_now()
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            row = (await store.lock_members(cur, member_id))[member_id]
            qualifying = await _qualifying(cur, [member_id], self._program, now)
            after = await self._apply_tier(cur, row, qualifying.get(member_id, 0), now)
            before = state_of(row)
            if (after.tier, after.valid_until) != (before.tier, before.valid_until):
                await auditlog.record(
                    conn,
                    auditlog.EVALUATE_TIER,
                    target_kind=auditlog.MEMBER,
                    target_id=member_id,
                    content={"member_id": member_id},
                )
        return await self.tier_status(member_id, now=now)

    async def evaluate_all_tiers(self, now: datetime | None = None, chunk: int = 100) -> int:
        """The daily evaluation: every member, in chunks of `chunk` (one short transaction
        each, members locked in id order). Returns the tier changes."""
        now = now or utc_now()
        changed, after = 0, "00000000-0000-0000-0000-000000000000"
        while True:
            async with self._pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    f"SELECT {store.MEMBER_STATE} FROM members WHERE id > %s "
                    "ORDER BY id LIMIT %s FOR UPDATE",
                    (after, chunk),
                )
                rows = await cur.fetchall()
                if not rows:
                    return changed
                qualifying = await _qualifying(cur, [r["id"] for r in rows], self._program, now)
                for row in rows:
                    tier = await self._apply_tier(cur, row, qualifying.get(row["id"], 0), now)
                    changed += tier.tier != row["tier"]
                after = rows[-1]["id"]

    async def _apply_tier(
        self, cur: Cursor, row: dict[str, Any], qualifying: int, now: datetime
    ) -> TierState:
        """Evaluates one locked member; returns the tier state it now has."""
        before = state_of(row)
        after = evaluate(self._program, before, qualifying, now)
        await cur.execute(
            "UPDATE members SET tier = %s, tier_valid_until = %s, tier_evaluated_at = %s "
            "WHERE id = %s",
            (after.tier, after.valid_until, now, row["id"]),
        )
        if after.tier != before.tier:
            await cur.execute(
                "INSERT INTO member_actions (member_id, action, detail, reason) "
                "VALUES (%s, 'tier', %s, %s)",
                (row["id"], after.tier or self._program.tiers[0].name, f"{qualifying} qualifying"),
            )
        return after

    async def tier_status(self, member_id: str, *, now: datetime | None = None) -> TierStatus:
        now = now or utc_now()
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"SELECT {store.MEMBER_STATE}, tier_evaluated_at FROM members WHERE id = %s",
                (member_id,),
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound("member", member_id)
            qualifying = await _qualifying(cur, [member_id], self._program, now)
        state = state_of(row)
        held = current(self._program, state, now)
        reached = self._program.tiers[reached_level(self._program, state, now)]
        return TierStatus(
            member_id=member_id,
            tier=held.tier.name,
            valid_until=held.valid_until,
            reached_tier=reached.name,
            manual_tier=row["manual_tier"] or "",
            qualifying=qualifying.get(member_id, 0),
            evaluated_at=row["tier_evaluated_at"],
        )


async def _qualifying(
    cur: Cursor, member_ids: list[str], program: Program, now: datetime
) -> dict[str, int]:
    await cur.execute(
        "SELECT member_id::text AS id, sum(qualifying) AS q FROM point_lots "
        "WHERE member_id = ANY(%s::uuid[]) AND qualifying > 0 AND earned_at > %s "
        "AND earned_at <= %s GROUP BY member_id",
        (member_ids, window_start(now, program.tier_window_months), now),
    )
    return {r["id"]: int(r["q"]) for r in await cur.fetchall()}
