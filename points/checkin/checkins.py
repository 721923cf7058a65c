"""CheckIn and GetCheckInStatus.

At most once per member per local day, also with concurrent calls from many servers:
everything happens in one PostgreSQL transaction under the member's row lock (the lock
order of the ledger), so concurrent check-ins of one member run one after another and each
sees the one before it; UNIQUE (member_id, local_day) on checkins is the last word should
anything get past that. The transaction inserts the check-in, credits the reward as an
earned lot with its 'earn' ledger entry (reference 'checkin:<day>', which writes its points
event) and so records the streak (each row carries the streak it reached). The member's
Redis mirror is settled after the commit, as every earn does.

No Redis gate in front: a check-in is one short transaction, and a gate that said "done"
before PostgreSQL did could lose a member's day after a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from common import validation
from common.errors import MemberFrozen
from points import store as points_store
from points.checkin import store
from points.checkin.model import (
    CheckedIn,
    CheckIn,
    CheckInStatus,
    continues,
    local_day,
    streak_today,
)
from points.context import Changed, Context
from points.earning import Earning
from points.errors import AlreadyCheckedIn
from points.members import Members
from points.program import utc_now
from points.store import Cursor

KEY_SCOPE = "checkin"  # the ledger entry's idempotency scope: the check-in's key


class CheckIns:
    def __init__(
        self,
        ctx: Context,
        members: Members,
        earning: Earning,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._pool, self._gate, self._program = ctx.pool, ctx.gate, ctx.program
        self._members = members
        self._earning = earning
        # What "now" is, hence "today": tests move it day by day; the API has no date.
        self.clock = clock

    async def check_in(self, *, member_id: str, idempotency_key: str) -> CheckedIn:
        member_id = validation.uuid_id("member_id", member_id)
        key = validation.idempotency_key("idempotency_key", idempotency_key)
        changed = Changed()
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            member = (await points_store.lock_members(cur, member_id))[member_id]
            # The day is read under the member's lock: a call that waited for it across
            # midnight counts on the day it runs, after the check-in it waited for.
            now = self.clock()
            today = local_day(now, self._program.zone)
            saved = await store.by_key(cur, member_id, key)
            if saved is not None:
                # The same key answers its check-in, whatever day it is now.
                checkin, replayed = saved, True
            else:
                if member["frozen"]:
                    raise MemberFrozen(member_id)
                last = await store.last(cur, member_id)
                if last is not None and last.day == today:
                    raise AlreadyCheckedIn(member_id, today.isoformat())
                checkin = await self._credit(cur, member_id, key, now, streak_today(last, today))
                replayed = False
                await changed.read(cur, member_id)
        await changed.settle(self._gate)
        return CheckedIn(
            checkin,
            next_reward=self._program.checkin_reward(checkin.streak + 1),
            replayed=replayed,
            balance=await self._members.balance(member_id),
        )

    async def status(self, *, member_id: str) -> CheckInStatus:
        member_id = validation.uuid_id("member_id", member_id)
        today = local_day(self.clock(), self._program.zone)
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await points_store.require_member(cur, member_id)
            last = await store.last(cur, member_id)
        done = last is not None and last.day == today
        alive = last is not None and (done or continues(last, today))
        streak = last.streak if alive and last is not None else 0
        return CheckInStatus(
            member_id,
            today=today,
            streak=streak,
            checked_in_today=done,
            next_reward=self._program.checkin_reward(streak + 1),
            last_day=last.day if last is not None else None,
        )

    async def _credit(
        self, cur: Cursor, member_id: str, key: str, now: datetime, streak: int
    ) -> CheckIn:
        """The reward credited as any earning is (Earning.credit_earned: a lot that counts
        toward tiers and lifetime points, its entry, debt repayment), then the check-in row."""
        day = local_day(now, self._program.zone).isoformat()
        points = self._program.checkin_reward(streak)
        reference = f"checkin:{day}"
        entry_id, _ = await self._earning.credit_earned(
            cur,
            member_id,
            points,
            reference,
            f"daily check-in, day {streak} of the streak",
            KEY_SCOPE,
            key,
            now=now,
        )
        try:
            return await store.insert(
                cur,
                member_id=member_id,
                day=local_day(now, self._program.zone),
                key=key,
                streak=streak,
                points=points,
                ledger_entry_id=entry_id,
            )
        except psycopg.errors.UniqueViolation as e:
            # Under the member's lock this cannot happen; if it does, the day's guard held.
            raise AlreadyCheckedIn(member_id, day) from e
