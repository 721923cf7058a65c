"""Pending purchase points (README.md, "Pending points"): a purchase credited as pending
(EarnForPurchase's pending_until, or SURGE_EARN_PENDING_DAYS) has its purchases row but no
lot, no entry and no balance, so neither PostgreSQL nor Redis counts it as spendable. Once
due, the leader's ledger job (jobs.py) activates it: the lot, the earn entry (naming its
earn rules) and the lifetime credit, as an immediate purchase would have, each purchase in
its own transaction under the member's row lock. A reversal before activation only shrinks
what will be posted (corrections.py)."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg
from psycopg.rows import dict_row

from common.errors import DomainError
from points import context, store
from points.context import Changed, Context
from points.program import utc_now
from points.store import Cursor

if TYPE_CHECKING:  # earning.py writes pending_event: no import cycle at run time
    from points.earning import Earning

CHUNK = 200  # purchases per query; a pass takes chunks until none is due or its budget ends
PASS_BUDGET_S = 20.0  # a pass's time, within the ledger job's interval (60 s by default)
log = logging.getLogger(__name__)


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

    async def activate_due(
        self,
        now: datetime | None = None,
        *,
        limit: int = CHUNK,
        budget_s: float = PASS_BUDGET_S,
    ) -> int:
        """Activates the purchases due at `now`, a chunk of `limit` at a time, until none is
        left or `budget_s` has passed (the next pass goes on), so a day's backlog drains
        whatever the volume; returns the points posted. A purchase whose activation fails
        is logged and passed over: it is tried again by the next pass, and never stops the
        ones due after it."""
        now = now or utc_now()
        started = time.monotonic()
        posted = 0
        after: tuple[datetime, str, str] | None = None  # keyset: past a failing purchase
        while time.monotonic() - started < budget_s:
            at, member, event = after if after is not None else (None, None, None)
            async with self._pool.connection() as conn:
                cur = await conn.cursor(row_factory=dict_row).execute(
                    "SELECT member_id::text, event_id, pending_until FROM purchases "
                    "WHERE pending_until <= %s AND activated_at IS NULL "
                    "AND (%s::timestamptz IS NULL OR (pending_until, member_id, event_id) "
                    "     > (%s::timestamptz, %s::uuid, %s::text)) "
                    "ORDER BY pending_until, member_id, event_id LIMIT %s",
                    (now, at, at, member, event, limit),
                )
                due = await cur.fetchall()
            for row in due:
                try:
                    posted += await self._activate(row["member_id"], row["event_id"], now)
                except (psycopg.Error, DomainError) as e:
                    log.warning(
                        "pending purchase %s of member %s not activated (%s): passed over",
                        row["event_id"],
                        row["member_id"],
                        type(e).__name__,
                    )
                after = (row["pending_until"], row["member_id"], row["event_id"])
            if len(due) < limit:
                break
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
