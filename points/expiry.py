"""Expiry: the periodic run that expires what remains of every lot past its expires_at,
one expire entry per lot (README.md, "Points ledger", Lots and expiry). Debits expire a
member's due lots themselves (store.expire_due): this run is what catches the rest."""

from __future__ import annotations

from datetime import datetime

from psycopg.rows import dict_row

from points import store
from points.context import Changed, Context
from points.model import ExpiryRun
from points.program import utc_now


class Expiry:
    def __init__(self, ctx: Context) -> None:
        self._pool, self._gate = ctx.pool, ctx.gate

    async def expire_points(self, now: datetime | None = None, *, limit: int = 200) -> ExpiryRun:
        """Writes expire entries for what remains of every lot due at `now`. Idempotent, and
        safe from several processes at once (each member under its row lock)."""
        now = now or utc_now()
        members = points = 0
        while True:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT DISTINCT l.member_id::text FROM point_lots l "
                    "JOIN members m ON m.id = l.member_id "
                    "WHERE l.remaining > 0 AND l.expires_at <= %s "
                    "AND m.points_balance > m.points_held LIMIT %s",
                    (now, limit),
                )
                due = [r[0] for r in await cur.fetchall()]
            expired_now = 0
            for member_id in due:
                changed = Changed()
                async with self._pool.connection() as conn, conn.transaction():
                    dcur = conn.cursor(row_factory=dict_row)
                    await store.lock_members(dcur, member_id)
                    n = await store.expire_due(dcur, member_id, now)
                    if n:
                        await changed.read(dcur, member_id)
                await changed.settle(self._gate)
                if n:
                    members, points, expired_now = members + 1, points + n, expired_now + n
            if len(due) < limit or expired_now == 0:
                return ExpiryRun(members, points)
