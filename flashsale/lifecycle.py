"""What happens to a redemption after Redeem: cancel, payment confirmed, payment window
closed. Each change is one PostgreSQL transaction under the fixed lock order (store.lock),
then the rows' new counters are mirrored into Redis (Settler.apply_mirrors); a repeated
change returns the redemption as it is.

A payment is confirmed only for the redemption's price: its cash_total_cents in the mall's
one currency (SURGE_CURRENCY); anything else is refused and changes nothing. A payment
reference confirms one redemption only, by a unique index on redemptions."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import psycopg
from psycopg_pool import AsyncConnectionPool

from common import validation
from common.errors import (
    AlreadyExists,
    NotCancellable,
    NotFound,
    PaymentMismatch,
    PaymentNotPending,
    PaymentWindowClosed,
)
from flashsale import history, outbox, store
from flashsale.model import SOLD, Redemption, RedemptionStatus
from flashsale.settle import Settler
from inventory import codes
from points.program import ExpiryPolicy

# Cancel: before shipping only; a cancelled one again returns it as it is.
_CANCELLABLE = frozenset(
    {
        RedemptionStatus.PENDING_PAYMENT,
        RedemptionStatus.COMMITTED,
        RedemptionStatus.PACKING,
        RedemptionStatus.CANCELLED,
    }
)


class Lifecycle:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        settler: Settler,
        *,
        currency: str,
        points_expiry: ExpiryPolicy | None = None,
    ) -> None:
        self._pool = pool
        self._settler = settler
        self._currency = currency  # the mall's: every redemption's cash is in it
        # A confirmation's points-back lot expires by the program's policy (None: never).
        self._points_expiry = points_expiry or ExpiryPolicy("never")

    async def cancel(self, *, redemption_id: str, member_id: str, reason: str) -> Redemption:
        redemption_id = validation.uuid_id("redemption_id", redemption_id)
        member_id = validation.uuid_id("member_id", member_id)
        reason = validation.text(
            "reason", reason, max_length=validation.MAX_REASON_LENGTH, required=False
        )
        async with self._pool.connection() as conn, conn.transaction():
            row = await store.lock(conn, redemption_id)
            if row is None or row["member_id"] != member_id:
                raise NotFound("redemption", redemption_id)
            status = RedemptionStatus(row["status"])
            if status not in _CANCELLABLE:
                # Shipped goods come back by a return (flashsale/fulfilment.py), not a cancel.
                raise NotCancellable(redemption_id, status.value)
            if row["replacement_of"] is not None and status is not RedemptionStatus.CANCELLED:
                # An exchange's replacement took no units from the campaign and no points:
                # give_back would return what it never took.
                raise NotCancellable(redemption_id, status.value, "it replaces a returned one")
            if status is RedemptionStatus.COMMITTED and row["redemption_code"] is not None:
                # A virtual good's code is the good: once issued it may be used at once, so
                # refunding the points would leave the member with both.
                raise NotCancellable(redemption_id, status.value, "its code is issued")
            if status is not RedemptionStatus.CANCELLED:
                # A pool code (inventory/codes.py): revoked with the cancel, or the cancel
                # is refused (CODE_CONSUMED) once a merchant consumed it.
                await codes.revoke_for_cancel(conn, redemption_id)
                await store.give_back(conn, row, RedemptionStatus.CANCELLED, reason or "cancelled")
                await outbox.redemption_changed(
                    conn,
                    row,
                    RedemptionStatus.CANCELLED,
                    reason=reason or "cancelled",
                    units_returned=True,
                )
            after = await store.select_one(conn, "r.id = %s", (redemption_id,))
            steps = await history.entries(conn, after) if after is not None else ()
            mirrors = await store.mirrors(conn, row)
        assert after is not None
        # Re-applied on a repeated cancel too: the mirrors are versioned, so this is a no-op
        # unless the first cancel died between PostgreSQL and Redis.
        await self._settler.apply_mirrors(row, *mirrors, units_returned=True)
        return dataclasses.replace(store.redemption_from_row(after), history=steps)

    async def confirm_payment(
        self,
        *,
        redemption_id: str,
        member_id: str,
        payment_reference: str,
        amount_cents: int,
        currency: str,
    ) -> Redemption:
        redemption_id = validation.uuid_id("redemption_id", redemption_id)
        member_id = validation.uuid_id("member_id", member_id)
        reference = validation.text(
            "payment_reference",
            payment_reference,
            max_length=validation.MAX_KEY_LENGTH,
            required=True,
        )
        validation.positive("amount_cents", amount_cents)
        validation.currency("currency", currency)
        window_closed = False
        async with self._pool.connection() as conn, conn.transaction():
            row = await store.lock(conn, redemption_id)
            if row is None or row["member_id"] != member_id:
                raise NotFound("redemption", redemption_id)
            status = RedemptionStatus(row["status"])
            # The same confirmation again (same reference) returns the redemption; any other
            # confirmation of a redemption not waiting for payment is refused, whatever it
            # says it paid (a paid one is not paid twice, under another reference).
            # Paid ones move on (fulfilment): any sold state is "already confirmed".
            again = status in SOLD and row["payment_reference"] == reference
            if not again and status is not RedemptionStatus.PENDING_PAYMENT:
                raise PaymentNotPending(redemption_id, status.value)
            if (amount_cents, currency) != (row["cash_total_cents"], self._currency):
                raise PaymentMismatch(redemption_id, row["cash_total_cents"], self._currency)
            if again:
                pass  # the same confirmation again: the redemption as it is
            elif row["payment_due_at"] <= datetime.now(UTC):
                await store.give_back(conn, row, RedemptionStatus.EXPIRED, "payment window closed")
                await outbox.redemption_changed(
                    conn,
                    row,
                    RedemptionStatus.EXPIRED,
                    reason="payment window closed",
                    units_returned=True,
                )
                window_closed = True
            else:
                try:
                    await store.confirm(conn, row, reference, self._points_expiry)
                except psycopg.errors.UniqueViolation as e:
                    # Another redemption was confirmed with this reference, before or in a
                    # race this transaction lost: leaving the block rolls everything back.
                    if e.diag.constraint_name != store.PAYMENT_REFERENCE_INDEX:
                        raise
                    raise AlreadyExists("redemption", "payment_reference", reference) from e
                await outbox.redemption_changed(
                    conn, row, RedemptionStatus.COMMITTED, units_returned=False
                )
            after = await store.select_one(conn, "r.id = %s", (redemption_id,))
            steps = await history.entries(conn, after) if after is not None else ()
            mirrors = await store.mirrors(conn, row)
        assert after is not None
        await self._settler.apply_mirrors(row, *mirrors, units_returned=window_closed)
        if window_closed:
            raise PaymentWindowClosed(redemption_id)
        return dataclasses.replace(store.redemption_from_row(after), history=steps)

    async def expire_overdue(self, limit: int = 200) -> int:
        """Expires points + cash redemptions whose payment window has passed; units and
        points come back. Idempotent; safe to run from several processes at once."""
        async with self._pool.connection() as conn:
            overdue = await store.overdue_payments(conn, limit)
        expired = 0
        for redemption_id in overdue:
            async with self._pool.connection() as conn, conn.transaction():
                row = await store.lock(conn, redemption_id)
                if row is None or row["status"] != RedemptionStatus.PENDING_PAYMENT.value:
                    continue
                await store.give_back(conn, row, RedemptionStatus.EXPIRED, "payment window closed")
                await outbox.redemption_changed(
                    conn,
                    row,
                    RedemptionStatus.EXPIRED,
                    reason="payment window closed",
                    units_returned=True,
                )
                mirrors = await store.mirrors(conn, row)
            await self._settler.apply_mirrors(row, *mirrors, units_returned=True)
            expired += 1
        return expired
