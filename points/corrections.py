"""Corrections: taking back what a refunded purchase earned (ReversePurchase, with debt for
what the balance cannot cover) and an operator's +/- adjustment (AdjustPoints).
README.md, "Points ledger": Reversals and debt, Adjustments."""

from __future__ import annotations

from psycopg.rows import dict_row

import auditlog
from common import actor, validation
from common.errors import (
    IdempotencyKeyReused,
    InsufficientPoints,
    InvalidArgument,
)
from points import context, store
from points.context import Changed, Context
from points.errors import PurchaseFullyReversed, PurchaseNotFound
from points.members import Members
from points.model import MAX_CENTS, MAX_POINTS, Earned, Reversed
from points.pending import pending_event
from points.program import utc_now
from points.store import Cursor


class Corrections:
    def __init__(self, ctx: Context, members: Members) -> None:
        self._pool, self._gate, self._program = ctx.pool, ctx.gate, ctx.program
        self._members = members  # the balance each answer carries

    async def reverse_purchase(
        self, *, member_id: str, purchase_event_id: str, amount_cents: int, event_id: str
    ) -> Reversed:
        """Takes back the points a refunded purchase earned: what is left of the purchase's
        lot first, then other points soonest expiry first, never below zero (points waiting
        for payment stay); the shortfall becomes debt. Partial refunds take back
        floor(points x refunded cents / purchase cents), counted cumulatively."""
        member_id = validation.uuid_id("member_id", member_id)
        purchase = validation.idempotency_key("purchase_event_id", purchase_event_id)
        validation.int_range("amount_cents", amount_cents, minimum=0, maximum=MAX_CENTS)
        event = validation.idempotency_key("event_id", event_id)
        changed = Changed()
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await store.lock_members(cur, member_id)
            await cur.execute(
                "SELECT amount_cents, points, reversed_cents, reversed_points, lot_id::text, "
                "pending_until IS NOT NULL AND activated_at IS NULL AS pending, pending_until AS until "
                "FROM purchases WHERE member_id = %s AND event_id = %s",
                (member_id, purchase),
            )
            p = await cur.fetchone()
            if p is None:
                raise PurchaseNotFound(member_id, purchase)
            await cur.execute(
                "SELECT purchase_event_id, requested_cents, points, taken, debt, "
                "coalesce(ledger_entry_id::text, '') AS entry FROM purchase_reversals "
                "WHERE member_id = %s AND event_id = %s",
                (member_id, event),
            )
            previous = await cur.fetchone()
            if previous is not None:
                if (previous["purchase_event_id"], previous["requested_cents"]) != (
                    purchase,
                    amount_cents,
                ):
                    raise IdempotencyKeyReused(event)
                result = (previous["points"], previous["taken"], previous["debt"])
                entry_id, replayed = previous["entry"], True
            else:
                left = p["amount_cents"] - p["reversed_cents"]
                if left == 0:
                    raise PurchaseFullyReversed(purchase)
                cents = amount_cents or left
                if cents > left:
                    raise InvalidArgument(
                        "amount_cents", f"exceeds the {left} cents of the purchase not reversed"
                    )
                total_cents = p["reversed_cents"] + cents
                total_points = p["points"] * total_cents // p["amount_cents"]
                points = total_points - p["reversed_points"]
                if p["pending"]:
                    # Never posted (pending.py): the reversal only shrinks what activation
                    # will post. No entry, no debt; `taken` counts what left the pending.
                    entry_id, taken, debt = "", points, 0
                    if points > 0:
                        await pending_event(cur, member_id, purchase, -points, p["until"])
                else:
                    entry_id, taken, debt = await self._take_back(
                        cur, member_id, points, p["lot_id"], purchase, cents, event
                    )
                await cur.execute(
                    "UPDATE purchases SET reversed_cents = %s, reversed_points = %s "
                    "WHERE member_id = %s AND event_id = %s",
                    (total_cents, total_points, member_id, purchase),
                )
                await cur.execute(
                    "INSERT INTO purchase_reversals (member_id, event_id, purchase_event_id, "
                    "amount_cents, requested_cents, points, taken, debt, ledger_entry_id) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, nullif(%s, '')::uuid)",
                    (
                        member_id,
                        event,
                        purchase,
                        cents,
                        amount_cents,
                        points,
                        taken,
                        debt,
                        entry_id,
                    ),
                )
                result, replayed = (points, taken, debt), False
            await changed.read(cur, member_id)
        await changed.settle(self._gate)
        points, taken, debt = result
        balance = await self._members.balance(member_id)
        return Reversed(points, taken, debt, entry_id, balance, replayed)

    async def _take_back(
        self,
        cur: Cursor,
        member_id: str,
        points: int,
        lot_id: str | None,
        purchase: str,
        cents: int,
        event: str,
    ) -> tuple[str, int, int]:
        """Returns (ledger entry, points taken from the balance, points recorded as debt)."""
        if points == 0:
            return "", 0, 0
        spend_reference = f"reversal:{event}"
        await store.expire_due(cur, member_id)
        row = await store.state(cur, member_id)
        taken = min(points, row["points_balance"] - row["points_held"])
        debt = points - taken
        own = 0
        if taken > 0 and lot_id is not None:
            # What is left of the purchase's own lot goes first, recorded like any spend.
            await cur.execute(
                "WITH t AS (SELECT id, least(remaining, %s) AS n FROM point_lots WHERE id = %s) "
                "UPDATE point_lots l SET remaining = l.remaining - t.n FROM t "
                "WHERE l.id = t.id RETURNING t.n",
                (taken, lot_id),
            )
            took = await cur.fetchone()
            own = int(took["n"]) if took else 0
            if own > 0:
                await cur.execute(
                    "INSERT INTO lot_spends (lot_id, member_id, reference, points) "
                    "VALUES (%s, %s, %s, %s)",
                    (lot_id, member_id, spend_reference, own),
                )
        if taken > own:
            await store.spend(cur, member_id, taken - own, spend_reference)
        if lot_id is not None:
            await cur.execute(
                "UPDATE point_lots SET qualifying = greatest(0, qualifying - %s) WHERE id = %s",
                (points, lot_id),
            )
        await store.add_lifetime(cur, member_id, -points, self._program.redemption_threshold)
        posted = await store.post(
            cur,
            member_id,
            kind="reversal",
            amount=-taken,
            debt_change=debt,
            reference=f"purchase:{purchase}",
            reason=f"purchase refunded ({context.money(cents)})",
            key_scope="reversal",
            key=event,
        )
        return posted.entry_id, taken, debt

    async def adjust(
        self, *, member_id: str, delta: int, reason: str, operator_id: str, idempotency_key: str
    ) -> Earned:
        """An operator's +/- correction. + is a lot with the program's expiry (not earned:
        no tier or threshold credit); - takes lots soonest expiry first and never more than
        is available. Idempotent by (member_id, idempotency_key). The entry (and the debt
        repayment a credit triggers) carries the actor's subject; the change writes its
        audit event in the same transaction, a replay writes none."""
        member_id = validation.uuid_id("member_id", member_id)
        if delta == 0:
            raise InvalidArgument("delta", "must not be 0")
        validation.int_range("delta", delta, minimum=-MAX_POINTS, maximum=MAX_POINTS)
        reason = context.reason(reason)
        operator = context.operator_id(operator_id, required=True)
        key = validation.idempotency_key("idempotency_key", idempotency_key)
        reference = f"adjust:{key}"
        by = actor.current().subject  # on the entries this adjustment makes
        changed = Changed()
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await store.lock_members(cur, member_id)
            previous = await store.keyed_entry(cur, member_id, "adjust", key)
            if previous is not None:
                if previous["amount"] != delta or previous["reason"] != reason:
                    raise IdempotencyKeyReused(key)
                entry_id, replayed = previous["id"], True
            else:
                if delta > 0:
                    now = utc_now()
                    await store.add_lot(
                        cur,
                        member_id,
                        source="adjust",
                        points=delta,
                        earned_at=now,
                        expires_at=self._program.expiry.expires_at(now),
                        reference=reference,
                    )
                else:
                    await store.expire_due(cur, member_id)
                    row = await store.state(cur, member_id)
                    available = row["points_balance"] - row["points_held"]
                    if available < -delta:
                        raise InsufficientPoints(member_id, available, -delta)
                    await store.spend(cur, member_id, -delta, reference)
                posted = await store.post(
                    cur,
                    member_id,
                    kind="adjust",
                    amount=delta,
                    reference=reference,
                    reason=reason,
                    key_scope="adjust",
                    key=key,
                    operator_id=operator,
                    actor=by,
                )
                if delta > 0:
                    await store.repay_debt(cur, member_id, reference, actor=by)
                await auditlog.record(
                    conn,
                    auditlog.ADJUST_POINTS,
                    target_kind=auditlog.MEMBER,
                    target_id=member_id,
                    content={
                        "member_id": member_id,
                        "delta": delta,
                        "reason": reason,
                        "operator_id": operator,
                        "idempotency_key": key,
                    },
                )
                entry_id, replayed = posted.entry_id, False
            await changed.read(cur, member_id)
        await changed.settle(self._gate)
        return Earned(entry_id, await self._members.balance(member_id), replayed, delta)
