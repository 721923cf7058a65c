"""A physical redemption's life after COMMITTED, and after-sales returns and exchanges
(docs/fulfilment.md has the state diagram):

    COMMITTED -> PACKING -> SHIPPED -> DELIVERED -> RETURN_REQUESTED -> RETURNED
                                                                     -> RETURN_REJECTED

Each step is one PostgreSQL transaction under the fixed lock order (store.lock: campaign,
member, redemption; then the item for a restock or an exchange) that changes the row,
writes the history entry (flashsale/history.py), the outbox event (events) and, for a
warehouse's or operator's step, the audit event (auditlog), so all commit or none does.

Idempotent: a step that already happened, asked again with the same arguments, returns the
redemption unchanged and writes nothing; asked with other arguments, or from a state that
does not lead to it, it is InvalidTransition naming the current state.

A return keeps the units sold: the campaign's units_committed and the member's units_taken
do not change (the campaign may have ended; the limit counts what a member bought).
Restocked units go to the item's stock on hand. The points come back to the lots they were
spent from, with their original expiry (as a cancel does: a lot that expired meanwhile
expires again at the next expiry run). The cash refund is recorded, not paid: the payment
service pays it. An exchange refunds nothing: a replacement redemption (zero points, zero
cash, COMMITTED, linked both ways) takes the units from the item's stock instead."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

import auditlog
import events
from common import actor, validation
from common.errors import (
    InsufficientStock,
    InvalidArgument,
    InvalidTransition,
    NotFound,
    ReturnWindowClosed,
)
from flashsale import bundles, history, store
from flashsale.model import Redemption, RedemptionStatus, ReturnDisposition
from flashsale.settle import Settler
from inventory import stock
from inventory.items import ItemKind
from inventory.stock import MovementKind

MAX_CARRIER_LENGTH = 64
MAX_TRACKING_LENGTH = 64
# A time a client reports (shipped, delivered) may run this far ahead of our clock.
_CLOCK_SKEW = timedelta(minutes=1)
# The idempotency key of an exchange's replacement: not printable ASCII, so no member's
# Redeem can ever have taken it (common.validation.idempotency_key).
_EXCHANGE_KEY = "\u21c4exchange:{}"

S = RedemptionStatus
# How far along the physical path a status is: a step "already happened" when the
# redemption is at or past its target (a warehouse retrying MarkShipped after delivery).
_RANK = {
    S.COMMITTED: 0,
    S.PACKING: 1,
    S.SHIPPED: 2,
    S.DELIVERED: 3,
    S.RETURN_REQUESTED: 4,
    S.RETURNED: 5,
    S.RETURN_REJECTED: 5,
}


def _now() -> datetime:
    return datetime.now(UTC)


class Fulfilment:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        settler: Settler,
        *,
        return_window_s: float,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._pool = pool
        self._settler = settler
        self._window = timedelta(seconds=return_window_s)
        self.clock = clock  # public: tests move it to open and close the return window

    async def start_packing(self, *, redemption_id: str, note: str) -> Redemption:
        note = _note(note)

        async def step(conn: AsyncConnection[Any], row: dict[str, Any]) -> dict[str, Any] | None:
            if _at_or_past(row, S.PACKING):
                return None
            _expect(row, S.COMMITTED, "start_packing")
            if row["item_kind"] != ItemKind.PHYSICAL.value:
                raise InvalidTransition(
                    row["id"], row["status"], "start_packing", "not a physical item"
                )
            await store.advance(conn, row["id"], S.PACKING)
            return {"note": note}

        return await self._step(redemption_id, None, S.PACKING, auditlog.START_PACKING, step)

    async def mark_shipped(
        self, *, redemption_id: str, carrier: str, tracking_number: str, shipped_at: datetime | None
    ) -> Redemption:
        carrier = validation.text("carrier", carrier, max_length=MAX_CARRIER_LENGTH, required=True)
        carrier = carrier.strip()
        tracking = validation.text(
            "tracking_number", tracking_number, max_length=MAX_TRACKING_LENGTH, required=True
        ).strip()
        self._not_future("shipped_at", shipped_at)

        async def step(conn: AsyncConnection[Any], row: dict[str, Any]) -> dict[str, Any] | None:
            if row["item_kind"] != ItemKind.PHYSICAL.value:
                raise InvalidArgument(
                    "tracking_number", f"a {row['item_kind']} item has nothing to ship"
                )
            if _at_or_past(row, S.SHIPPED):
                same = (row["carrier"], row["tracking_number"]) == (carrier, tracking)
                if same and shipped_at in (None, row["shipped_at"]):
                    return None
                raise InvalidTransition(
                    row["id"], row["status"], "mark_shipped", "shipped with other details"
                )
            _expect(row, S.PACKING, "mark_shipped")
            at = shipped_at or self.clock()
            if at < row["created_at"]:
                raise InvalidArgument("shipped_at", "is before the redemption was made")
            await store.advance(
                conn, row["id"], S.SHIPPED, carrier=carrier, tracking_number=tracking, shipped_at=at
            )
            return {"carrier": carrier, "tracking_number": tracking, "shipped_at": at.isoformat()}

        return await self._step(redemption_id, None, S.SHIPPED, auditlog.MARK_SHIPPED, step)

    async def mark_delivered(
        self, *, redemption_id: str, delivered_at: datetime | None
    ) -> Redemption:
        self._not_future("delivered_at", delivered_at)

        async def step(conn: AsyncConnection[Any], row: dict[str, Any]) -> dict[str, Any] | None:
            if _at_or_past(row, S.DELIVERED):
                if delivered_at in (None, row["delivered_at"]):
                    return None
                raise InvalidTransition(
                    row["id"], row["status"], "mark_delivered", "delivered at another time"
                )
            _expect(row, S.SHIPPED, "mark_delivered")
            at = delivered_at or self.clock()
            if at < row["shipped_at"]:
                raise InvalidArgument("delivered_at", "is before shipped_at")
            await store.advance(conn, row["id"], S.DELIVERED, delivered_at=at)
            return {"delivered_at": at.isoformat()}

        return await self._step(redemption_id, None, S.DELIVERED, auditlog.MARK_DELIVERED, step)

    async def request_return(
        self, *, redemption_id: str, member_id: str, reason: str
    ) -> Redemption:
        member_id = validation.uuid_id("member_id", member_id)
        reason = validation.text(
            "reason", reason, max_length=validation.MAX_REASON_LENGTH, required=True
        ).strip()

        async def step(conn: AsyncConnection[Any], row: dict[str, Any]) -> dict[str, Any] | None:
            if row["return_requested_at"] is not None:
                if row["return_reason"] == reason:
                    return None
                raise InvalidTransition(
                    row["id"], row["status"], "request_return", "requested with another reason"
                )
            _expect(row, S.DELIVERED, "request_return")
            closes = row["delivered_at"] + self._window
            now = self.clock()
            if now >= closes:
                raise ReturnWindowClosed(row["id"], closes.isoformat())
            await store.advance(
                conn, row["id"], S.RETURN_REQUESTED, return_requested_at=now, return_reason=reason
            )
            return {"reason": reason}

        return await self._step(redemption_id, member_id, S.RETURN_REQUESTED, None, step)

    async def accept_return(
        self,
        *,
        redemption_id: str,
        disposition: ReturnDisposition | None,
        cash_refund_cents: int,
        exchange: bool,
        note: str,
    ) -> Redemption:
        if disposition is None:
            raise InvalidArgument("disposition", "is required: RESTOCK or WRITE_OFF")
        if cash_refund_cents < 0:
            raise InvalidArgument("cash_refund_cents", "must not be negative")
        if exchange and cash_refund_cents:
            raise InvalidArgument("cash_refund_cents", "an exchange refunds nothing: must be 0")
        note = _note(note)

        async def step(conn: AsyncConnection[Any], row: dict[str, Any]) -> dict[str, Any] | None:
            if row["status"] == S.RETURNED.value:
                asked = (disposition.value, cash_refund_cents, exchange)
                done = (
                    row["return_disposition"],
                    row["cash_refund_cents"],
                    bool(row["replaced_by"]),
                )
                if asked == done:
                    return None
                raise InvalidTransition(
                    row["id"], row["status"], "accept_return", "accepted with other terms"
                )
            _expect(row, S.RETURN_REQUESTED, "accept_return")
            if cash_refund_cents > row["cash_total_cents"]:
                raise InvalidArgument(
                    "cash_refund_cents",
                    f"must be at most the redemption's cash_total_cents ({row['cash_total_cents']})",
                )
            details: dict[str, Any] = {
                "disposition": disposition.value,
                "cash_refund_cents": cash_refund_cents,
                "exchange": exchange,
                "note": note,
            }
            qty = row["quantity"]
            parts = await bundles.lock_for_return(conn, row, exchange=exchange)
            await store.item_stock(conn, row["item_id"])  # the item row locked first
            # One change of the item for the low-stock signal (stock.one_change).
            async with stock.one_change(conn, row["item_id"]):
                # The units come back on hand (the stock ledger), and a write-off takes them
                # out again at once: both movements name the redemption.
                restock = disposition is ReturnDisposition.RESTOCK
                await bundles.return_units(
                    conn, row, parts, write_off=not restock, reason="returned"
                )
                if restock:
                    details["restocked_units"] = qty
                if exchange:
                    available = await store.item_stock(conn, row["item_id"])
                    if available < qty:
                        raise InsufficientStock(row["item_id"], available, qty)
                    replacement = await self._replace(conn, row)
                    await stock.take(
                        conn,
                        row["item_id"],
                        MovementKind.REDEEMED,
                        qty,
                        campaign_id=row["campaign_id"],
                        redemption_id=replacement,
                        reason="exchange replacement",
                    )
                    details["replaced_by"] = replacement
                else:
                    await store.refund_points(conn, row, "returned")
                    details["points_refunded"] = row["points_total"]
            await store.advance(
                conn,
                row["id"],
                S.RETURNED,
                return_resolved_at=self.clock(),
                return_disposition=disposition.value,
                cash_refund_cents=cash_refund_cents,
            )
            return details

        return await self._step(redemption_id, None, S.RETURNED, auditlog.ACCEPT_RETURN, step)

    async def reject_return(self, *, redemption_id: str, reason: str) -> Redemption:
        reason = validation.text(
            "reason", reason, max_length=validation.MAX_REASON_LENGTH, required=True
        ).strip()

        async def step(conn: AsyncConnection[Any], row: dict[str, Any]) -> dict[str, Any] | None:
            if row["status"] == S.RETURN_REJECTED.value:
                if row["return_rejection"] == reason:
                    return None
                raise InvalidTransition(
                    row["id"], row["status"], "reject_return", "rejected with another reason"
                )
            _expect(row, S.RETURN_REQUESTED, "reject_return")
            await store.advance(
                conn,
                row["id"],
                S.RETURN_REJECTED,
                return_resolved_at=self.clock(),
                return_rejection=reason,
            )
            return {"reason": reason}

        return await self._step(
            redemption_id, None, S.RETURN_REJECTED, auditlog.REJECT_RETURN, step
        )

    async def _replace(self, conn: AsyncConnection[Any], row: dict[str, Any]) -> str:
        """The exchange's replacement redemption and its committed event (its history's
        first entry is synthesized, as every redemption's)."""
        replacement_id = str(uuid.uuid4())
        await store.insert_replacement(conn, row, replacement_id, _EXCHANGE_KEY.format(row["id"]))
        await events.append(
            conn,
            events.EventType.REDEMPTION_COMMITTED,
            "redemption",
            replacement_id,
            {
                **_payload(row),
                "redemption_id": replacement_id,
                "status": S.COMMITTED.value,
                "points_total": 0,
                "cash_total_cents": 0,
                "replacement_of": row["id"],
            },
            actor=actor.current().subject,
        )
        return replacement_id

    async def _step(
        self,
        redemption_id: str,
        member_id: str | None,
        target: RedemptionStatus,
        audit_action: str | None,
        step: Callable[[AsyncConnection[Any], dict[str, Any]], Awaitable[dict[str, Any] | None]],
    ) -> Redemption:
        """Runs one step in one transaction: lock, the step's checks and writes, then (unless
        it had already happened) the history entry, the event and the audit event."""
        redemption_id = validation.uuid_id("redemption_id", redemption_id)
        who = actor.current().subject
        async with self._pool.connection() as conn, conn.transaction():
            locked = await store.lock(conn, redemption_id)
            if locked is None or (member_id is not None and locked["member_id"] != member_id):
                raise NotFound("redemption", redemption_id)
            full = await store.select_one(conn, "r.id = %s", (redemption_id,))
            assert full is not None
            row = {**full, **locked}
            details = await step(conn, row)
            if details is not None:
                by = f"member:{member_id}" if member_id is not None else who
                note = details.get("note") or details.get("reason") or ""
                await history.record(
                    conn, redemption_id, target, actor=by, note=note, details=details | {"via": who}
                )
                await events.append(
                    conn,
                    _EVENT[target],
                    "redemption",
                    redemption_id,
                    {**_payload(row), "status": target.value, **details},
                    actor=None if member_id is not None else who,
                )
                if audit_action is not None:
                    await auditlog.record(
                        conn,
                        audit_action,
                        target_kind=auditlog.REDEMPTION,
                        target_id=redemption_id,
                        content={"redemption_id": redemption_id, **details},
                    )
            after = await store.select_one(conn, "r.id = %s", (redemption_id,))
            steps = await history.entries(conn, after) if after is not None else ()
            refunded = details is not None and details.get("points_refunded", 0) > 0
            mirrors = await store.mirrors(conn, row) if refunded else None
        assert after is not None
        if mirrors is not None:
            # The member's points came back: Redis learns the new available balance.
            await self._settler.apply_mirrors(row, *mirrors)
        return dataclasses.replace(store.redemption_from_row(after), history=steps)

    def _not_future(self, field: str, moment: datetime | None) -> None:
        if moment is not None and moment > self.clock() + _CLOCK_SKEW:
            raise InvalidArgument(field, "must not be in the future")


_EVENT = {
    S.PACKING: events.EventType.REDEMPTION_PACKING,
    S.SHIPPED: events.EventType.REDEMPTION_SHIPPED,
    S.DELIVERED: events.EventType.REDEMPTION_DELIVERED,
    S.RETURN_REQUESTED: events.EventType.REDEMPTION_RETURN_REQUESTED,
    S.RETURNED: events.EventType.REDEMPTION_RETURNED,
    S.RETURN_REJECTED: events.EventType.REDEMPTION_RETURN_REJECTED,
}


def _payload(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "redemption_id": row["id"],
        "member_id": row["member_id"],
        "campaign_id": row["campaign_id"],
        "item_id": row["item_id"],
        "quantity": row["quantity"],
    }


def _note(note: str) -> str:
    return validation.text(
        "note", note, max_length=validation.MAX_REASON_LENGTH, required=False
    ).strip()


def _at_or_past(row: dict[str, Any], status: RedemptionStatus) -> bool:
    rank = _RANK.get(RedemptionStatus(row["status"]))
    return rank is not None and rank >= _RANK[status]


def _expect(row: dict[str, Any], status: RedemptionStatus, transition: str) -> None:
    if row["status"] != status.value:
        raise InvalidTransition(row["id"], row["status"], transition)
