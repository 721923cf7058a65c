"""Pending purchase points (README.md, "Pending points"): a purchase credited as pending
(EarnForPurchase's pending_until, or SURGE_EARN_PENDING_DAYS) has its purchases row but no
lot, no entry and no balance, so neither PostgreSQL nor Redis counts it as spendable. Once
due, the leader's ledger job (jobs.py) activates it: the lot, the earn entry (naming its
earn rules) and the lifetime credit, as an immediate purchase would have, each purchase in
its own transaction under the member's row lock. A reversal before activation only shrinks
what will be posted (corrections.py)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from psycopg.rows import dict_row

from points import context, store
from points.context import Changed, Context
from points.program import utc_now
from points.store import Cursor

if TYPE_CHECKING:  # earning.py writes pending_event: no import cycle at run time
    from points.earning import Earning

CHUNK = 200  # purchases per pass: a backlog drains over several passes


async def pending_event(
    cur: Cursor, member_id: str, event: str, change: int, until: datetime | None
) -> None:
    """points.pending (docs/events.md): pending points credited (> 0) or reversed before
    activation (< 0), in the transaction that makes the change; activation is points.earned."""
    await cur.execute(
        "SELECT append_event('points.pending', 'member', %s, jsonb_build_object("
        "'member_id', %s::text, 'purchase_event_id', %s::text, 'points', %s::bigint, "
        "'pending_until', %s::timestamptz))",
        (member_id, member_id, event, change, until),
    )


class Pending:
    def __init__(self, ctx: Context, earning: Earning) -> None:
        self._pool, self._gate = ctx.pool, ctx.gate
        self._earning = earning

    async def activate_due(self, now: datetime | None = None, *, limit: int = CHUNK) -> int:
        """Activates up to `limit` purchases due at `now`; returns the points posted."""
        now = now or utc_now()
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                "SELECT member_id::text, event_id FROM purchases WHERE pending_until <= %s "
                "AND activated_at IS NULL ORDER BY pending_until LIMIT %s",
                (now, limit),
            )
            due = await cur.fetchall()
        posted = 0
        for row in due:
            posted += await self._activate(row["member_id"], row["event_id"], now)
        return posted

    async def _activate(self, member_id: str, event: str, now: datetime) -> int:
        changed = Changed()
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await store.lock_members(cur, member_id)
            await cur.execute(
                "SELECT amount_cents, points, reversed_points, tier, multiplier, earn_rule_ids "
                "FROM purchases WHERE member_id = %s AND event_id = %s "
                "AND pending_until <= %s AND activated_at IS NULL",
                (member_id, event, now),
            )
            p = await cur.fetchone()
            if p is None:  # another process (a former leader) was first
                return 0
            points = int(p["points"] - p["reversed_points"])
            entry_id, lot_id = "", ""
            if points > 0:
                rules = list(p["earn_rule_ids"])
                entry_id, lot_id = await self._earning.credit_earned(
                    cur,
                    member_id,
                    points,
                    f"purchase:{event}",
                    f"pending purchase of {context.money(p['amount_cents'])} activated "
                    f"({p['tier']} x{p['multiplier']}"
                    + (f", {len(rules)} earn rule(s))" if rules else ")"),
                    "purchase",
                    event,
                    now=now,
                    rule_ids=rules,
                )
            # Reversals after activation take back floor(points x cents / amount) of the
            # whole purchase less what was reversed before: the same totals either way.
            await cur.execute(
                "UPDATE purchases SET activated_at = %s, lot_id = nullif(%s, '')::uuid, "
                "ledger_entry_id = nullif(%s, '')::uuid WHERE member_id = %s AND event_id = %s",
                (now, lot_id, entry_id, member_id, event),
            )
            await changed.read(cur, member_id)
        await changed.settle(self._gate)
        return points
