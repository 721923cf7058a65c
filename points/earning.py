"""Earning: a generic earn (EarnPoints), a purchase (EarnForPurchase) and a task
(EarnForTask). All three are earnings: each is a lot with the program's expiry, counts
toward lifetime and qualifying points, repays debt first, and is idempotent by the caller's
key (README.md, "Points ledger", Earning)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from psycopg.rows import dict_row

from common import validation
from common.errors import IdempotencyKeyReused, InvalidArgument, NotFound
from points import context, pending, store, tiers
from points import earn_rules_eval as rules_eval
from points.context import Changed, Context
from points.earn_rules import MAX_LABEL, check_moment
from points.errors import TaskCapReached, UnknownTaskRule
from points.members import Members
from points.model import MAX_CENTS, MAX_POINTS, Earned, Preview
from points.program import utc_now
from points.store import Cursor


class Earning:
    def __init__(self, ctx: Context, members: Members) -> None:
        self._pool, self._gate, self._program = ctx.pool, ctx.gate, ctx.program
        self._members = members  # the balance each answer carries

    async def earn(
        self, *, member_id: str, points: int, reason: str, idempotency_key: str
    ) -> Earned:
        """A generic earn (EarnPoints): a lot with the program's expiry; counts toward tiers
        and the redemption threshold. Idempotent by (member_id, idempotency_key)."""
        member_id = validation.uuid_id("member_id", member_id)
        validation.int_range("points", points, minimum=1, maximum=MAX_POINTS)
        reason = context.reason(reason)
        key = validation.idempotency_key("idempotency_key", idempotency_key)
        changed = Changed()
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await store.lock_members(cur, member_id)
            previous = await store.keyed_entry(cur, member_id, "", key)
            if previous is not None:
                if previous["amount"] != points or previous["reason"] != reason:
                    raise IdempotencyKeyReused(key)
                entry_id, replayed = previous["id"], True
            else:
                entry_id, _ = await self.credit_earned(
                    cur, member_id, points, f"earn:{key}", reason, "", key
                )
                replayed = False
            await changed.read(cur, member_id)
        await changed.settle(self._gate)
        return Earned(entry_id, await self._members.balance(member_id), replayed, points)

    async def earn_for_purchase(
        self,
        *,
        member_id: str,
        amount_cents: int,
        event_id: str,
        channel: str = "",
        category: str = "",
        pending_until: datetime | None = None,
        now: datetime | None = None,
    ) -> Earned:
        """amount / 100 x earn rate x the member's tier multiplier, rounded down (the base),
        plus what the matching earn rules give (earn_rules_eval.py), in one transaction.
        Pending until pending_until (or now + SURGE_EARN_PENDING_DAYS): then no lot, no
        entry, no balance until the activation job posts them (pending.py)."""
        member_id = validation.uuid_id("member_id", member_id)
        validation.int_range("amount_cents", amount_cents, minimum=1, maximum=MAX_CENTS)
        event = validation.idempotency_key("event_id", event_id)
        channel = validation.text("channel", channel, max_length=MAX_LABEL, required=False)
        category = validation.text("category", category, max_length=MAX_LABEL, required=False)
        now = now or utc_now()
        until = self._pending_until(pending_until, now)
        changed = Changed()
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            row = (await store.lock_members(cur, member_id))[member_id]
            await cur.execute(
                "SELECT amount_cents, points, coalesce(ledger_entry_id::text, '') AS entry, "
                "base_points, rule_points, pending_until, activated_at "
                "FROM purchases WHERE member_id = %s AND event_id = %s",
                (member_id, event),
            )
            previous = await cur.fetchone()
            if previous is not None:
                if previous["amount_cents"] != amount_cents:
                    raise IdempotencyKeyReused(event)
                entry_id, points, replayed = previous["entry"], previous["points"], True
                applied = rules_eval.from_json(previous["rule_points"])
                base = previous["base_points"] if previous["base_points"] is not None else points
                until = previous["pending_until"] if previous["activated_at"] is None else None
            else:
                tier = tiers.current(self._program, tiers.state_of(row), now).tier
                base = self._program.points_for_purchase(amount_cents, tier.multiplier)
                purchase = rules_eval.Purchase(now, tier.name, amount_cents, channel, category)
                applied = await rules_eval.evaluate(cur, member_id, base, purchase, give=True)
                points = base + sum(a.points for a in applied)
                rule_ids = [a.rule_id for a in applied if a.points > 0]
                entry_id, lot_id = "", ""
                if points > 0 and until is None:
                    entry_id, lot_id = await self.credit_earned(
                        cur,
                        member_id,
                        points,
                        f"purchase:{event}",
                        purchase_reason(amount_cents, tier.name, tier.multiplier, applied),
                        "purchase",
                        event,
                        now=now,
                        rule_ids=rule_ids,
                    )
                await cur.execute(
                    "INSERT INTO purchases (member_id, event_id, amount_cents, points, tier, "
                    "multiplier, lot_id, ledger_entry_id, base_points, earn_rule_ids, "
                    "rule_points, pending_until) VALUES (%s, %s, %s, %s, %s, %s, "
                    "nullif(%s, '')::uuid, nullif(%s, '')::uuid, %s, %s, %s, %s)",
                    (
                        member_id,
                        event,
                        amount_cents,
                        points,
                        tier.name,
                        tier.multiplier,
                        lot_id,
                        entry_id,
                        base,
                        rule_ids,
                        rules_eval.to_json([a for a in applied if a.points > 0]),
                        until if points > 0 else None,
                    ),
                )
                if points > 0 and until is not None:
                    await pending.pending_event(cur, member_id, event, points, until)
                applied = [a for a in applied if a.points > 0]
                replayed = False
            await changed.read(cur, member_id)
        await changed.settle(self._gate)
        balance = await self._members.balance(member_id)
        return Earned(entry_id, balance, replayed, points, applied, base, until)

    def _pending_until(self, requested: datetime | None, now: datetime) -> datetime | None:
        if requested is not None:
            if requested > now + timedelta(days=366):
                raise InvalidArgument("pending_until", "must be at most 366 days ahead")
            return requested if requested > now else None
        days = self._program.earn_pending_days
        return now + timedelta(days=days) if days > 0 else None

    async def preview(
        self,
        *,
        member_id: str,
        amount_cents: int,
        channel: str = "",
        category: str = "",
        at: datetime | None = None,
    ) -> Preview:
        """What EarnForPurchase would give at `at` (default now) and why; changes nothing."""
        member_id = validation.uuid_id("member_id", member_id)
        validation.int_range("amount_cents", amount_cents, minimum=1, maximum=MAX_CENTS)
        channel = validation.text("channel", channel, max_length=MAX_LABEL, required=False)
        category = validation.text("category", category, max_length=MAX_LABEL, required=False)
        check_moment("at", at)
        at = at or utc_now()
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"SELECT {store.MEMBER_STATE} FROM members WHERE id = %s", (member_id,)
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound("member", member_id)
            tier = tiers.current(self._program, tiers.state_of(row), at).tier
            base = self._program.points_for_purchase(amount_cents, tier.multiplier)
            purchase = rules_eval.Purchase(at, tier.name, amount_cents, channel, category)
            applied = await rules_eval.evaluate(cur, member_id, base, purchase, give=False)
        return Preview(base, tier.name, base + sum(a.points for a in applied), applied)

    async def earn_for_task(self, *, member_id: str, rule: str, event_id: str) -> Earned:
        """A named rule's fixed points, at most `cap` times per member."""
        member_id = validation.uuid_id("member_id", member_id)
        if not rule:
            raise InvalidArgument("rule", "is required")
        task = self._program.task(rule)
        if task is None:
            raise UnknownTaskRule(rule, [r.name for r in self._program.task_rules])
        event = validation.idempotency_key("event_id", event_id)
        reference = f"task:{task.name}"
        changed = Changed()
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await store.lock_members(cur, member_id)
            previous = await store.keyed_entry(cur, member_id, "task", event)
            if previous is not None:
                if previous["reference"] != reference:
                    raise IdempotencyKeyReused(event)
                entry_id, points, replayed = previous["id"], previous["amount"], True
            else:
                if task.cap is not None:
                    await cur.execute(
                        "SELECT count(*) AS n FROM ledger_entries WHERE member_id = %s "
                        "AND key_scope = 'task' AND reference = %s",
                        (member_id, reference),
                    )
                    done = await cur.fetchone()
                    if done is not None and done["n"] >= task.cap:
                        raise TaskCapReached(task.name, task.cap)
                entry_id, _ = await self.credit_earned(
                    cur, member_id, task.points, reference, f"task {task.name}", "task", event
                )
                points, replayed = task.points, False
            await changed.read(cur, member_id)
        await changed.settle(self._gate)
        return Earned(entry_id, await self._members.balance(member_id), replayed, points)

    async def credit_earned(
        self,
        cur: Cursor,
        member_id: str,
        points: int,
        reference: str,
        reason: str,
        key_scope: str,
        key: str,
        *,
        now: datetime | None = None,
        rule_ids: list[str] | None = None,
    ) -> tuple[str, str]:
        """An earned lot (counts toward tiers and lifetime), its entry, then debt repayment.
        Returns (ledger entry id, lot id)."""
        now = now or utc_now()
        lot_id = await store.add_lot(
            cur,
            member_id,
            source="earn",
            points=points,
            qualifying=points,
            earned_at=now,
            expires_at=self._program.expiry.expires_at(now),
            reference=reference,
        )
        posted = await store.post(
            cur,
            member_id,
            kind="earn",
            amount=points,
            reference=reference,
            reason=reason,
            key_scope=key_scope,
            key=key,
        )
        if rule_ids:
            await cur.execute(
                "UPDATE ledger_entries SET earn_rule_ids = %s WHERE id = %s",
                (rule_ids, posted.entry_id),
            )
        await store.add_lifetime(cur, member_id, points, self._program.redemption_threshold)
        await store.repay_debt(cur, member_id, reference)
        return posted.entry_id, lot_id


def purchase_reason(
    cents: int, tier: str, multiplier: Decimal, applied: list[rules_eval.Applied]
) -> str:
    rules = "".join(f" + {a.name} {a.points}" for a in applied if a.points > 0)
    return f"purchase of {context.money(cents)} at {tier} x{multiplier}{rules}"
