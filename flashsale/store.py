"""Redemptions in PostgreSQL: the SQL, no rules. Callers hold the transaction; every writer
takes rows in one fixed lock order (campaign, member, redemption), as commit_redemptions()
does, so batches, cancels and expiries never deadlock."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from common import actor
from flashsale import bundles, history, points_back
from flashsale.gate import CampaignMirror
from flashsale.model import (
    Address,
    Redemption,
    RedemptionStatus,
    ReturnDisposition,
    ReturnInfo,
    Shipment,
    new_redemption_code,
)
from inventory import stock
from inventory.items import ItemKind
from points.gate import MemberMirror
from points.program import ExpiryPolicy

# The unique index (server/migrations/0005) by which a payment reference confirms one
# redemption only; its violation is the caller's ALREADY_EXISTS.
PAYMENT_REFERENCE_INDEX = "redemptions_payment_reference"

SELECT = (
    "SELECT r.id::text, r.member_id::text, r.campaign_id::text, c.item_id::text, r.quantity, "
    "r.points_total, r.cash_total_cents, r.status, "
    # A pool item's code lives in item_codes (codes are unique per item only).
    "coalesce(r.redemption_code, (SELECT ic.code FROM item_codes ic "
    "WHERE ic.redemption_id = r.id)) AS redemption_code, r.shipping_address, "
    "r.idempotency_key, r.request_hash, r.created_at, r.updated_at, r.payment_due_at, "
    "r.payment_reference, r.carrier, r.tracking_number, r.shipped_at, r.delivered_at, "
    "r.return_requested_at, r.return_reason, r.return_resolved_at, r.return_disposition, "
    "r.cash_refund_cents, r.return_rejection, r.replacement_of::text, r.replaced_by::text, "
    "r.list_points_total, r.price_rule_id::text, "
    "r.points_back, "
    + bundles.PARTS_COLUMN
    + " FROM redemptions r JOIN campaigns c ON c.id = r.campaign_id"
)


async def select_one(
    conn: AsyncConnection[Any], where: str, params: tuple[Any, ...]
) -> dict[str, Any] | None:
    cur = await conn.cursor(row_factory=dict_row).execute(f"{SELECT} WHERE {where}", params)
    return await cur.fetchone()


async def lock(conn: AsyncConnection[Any], redemption_id: str) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT campaign_id::text, member_id::text FROM redemptions WHERE id = %s", (redemption_id,)
    )
    ids = await cur.fetchone()
    if ids is None:
        return None
    await cur.execute("SELECT 1 FROM campaigns WHERE id = %s FOR UPDATE", (ids["campaign_id"],))
    await cur.execute("SELECT 1 FROM members WHERE id = %s FOR UPDATE", (ids["member_id"],))
    await cur.execute(
        "SELECT r.id::text, r.member_id::text, r.campaign_id::text, r.quantity, r.points_total, "
        "r.cash_total_cents, r.status, r.idempotency_key, r.request_hash, r.payment_due_at, r.payment_reference, "
        "r.redemption_code, r.replacement_of::text, r.points_back, c.item_id::text, "
        "i.kind AS item_kind FROM redemptions r JOIN campaigns c ON c.id = r.campaign_id "
        "JOIN items i ON i.id = c.item_id WHERE r.id = %s FOR UPDATE OF r",
        (redemption_id,),
    )
    return await cur.fetchone()


async def give_back(
    conn: AsyncConnection[Any], row: dict[str, Any], status: RedemptionStatus, reason: str
) -> None:
    """Units and points of a sold (COMMITTED, PACKING) or pending redemption go back; the
    ledger and the history say why."""
    qty, points = row["quantity"], row["points_total"]
    committed = row["status"] != RedemptionStatus.PENDING_PAYMENT.value
    units_column = "units_committed" if committed else "units_held"
    await conn.execute(
        f"UPDATE campaigns SET {units_column} = {units_column} - %s, version = version + 1 "
        "WHERE id = %s",
        (qty, row["campaign_id"]),
    )
    await conn.execute(
        "UPDATE campaign_members SET units_taken = units_taken - %s, version = version + 1 "
        "WHERE campaign_id = %s AND member_id = %s",
        (qty, row["campaign_id"], row["member_id"]),
    )
    reference = f"redemption:{row['id']}"
    if committed and points > 0:
        # The points go back to the lots they came from, with their original expiry (a lot
        # that expired meanwhile expires again at the next expiry run).
        await conn.execute("SELECT restore_lots(%s, %s, %s)", (row["member_id"], reference, points))
        await conn.execute(
            "SELECT post_entry(%s, 'refund', %s, 0, %s, %s)",
            (row["member_id"], points, reference, reason),
        )
    if committed:  # after the refund, so the two net (flashsale/points_back.py)
        await points_back.reverse(conn, row, reason)
    else:
        await conn.execute(
            "UPDATE members SET points_held = points_held - %s, version = version + 1 WHERE id = %s",
            (points, row["member_id"]),
        )
    # Points that come back (or stop being held) repay debt first.
    await conn.execute("SELECT repay_debt(%s, %s)", (row["member_id"], reference))
    if committed:  # its units back into the campaign's allotment (the stock ledger)
        await stock.unredeem(conn, row["id"], reason=reason)
    await conn.execute(
        "UPDATE redemptions SET status = %s, cancel_reason = %s, updated_at = now() WHERE id = %s",
        (status.value, reason, row["id"]),
    )
    await history.record(conn, row["id"], status, actor=actor.current().subject, note=reason)


async def confirm(
    conn: AsyncConnection[Any], row: dict[str, Any], reference: str, expiry: ExpiryPolicy
) -> None:
    """The payment confirmed: held units and points are spent, the points back posted."""
    qty, points = row["quantity"], row["points_total"]
    await conn.execute(
        "UPDATE campaigns SET units_held = units_held - %s, units_committed = units_committed + %s, "
        "version = version + 1 WHERE id = %s",
        (qty, qty, row["campaign_id"]),
    )
    await conn.execute(
        "UPDATE members SET points_held = points_held - %s, version = version + 1 WHERE id = %s",
        (points, row["member_id"]),
    )
    if points > 0:
        # Held points were spared by expiry, so the lots still hold them: soonest expiry first.
        spent = f"redemption:{row['id']}"
        await conn.execute("SELECT spend_lots(%s, %s, %s)", (row["member_id"], points, spent))
        await conn.execute(
            "SELECT post_entry(%s, 'redeem', %s, 0, %s, "
            "'flash-sale redemption, payment confirmed')",
            (row["member_id"], -points, spent),
        )
    await points_back.post(conn, row, expiry)
    await stock.redeem(conn, row["id"], row["campaign_id"], qty)
    code = new_redemption_code() if row["item_kind"] == ItemKind.VIRTUAL.value else None
    await conn.execute(
        "UPDATE redemptions SET status = 'COMMITTED', payment_reference = %s, "
        "redemption_code = %s, updated_at = now() WHERE id = %s",
        (reference, code, row["id"]),
    )
    await history.record(
        conn,
        row["id"],
        RedemptionStatus.COMMITTED,
        actor=actor.current().subject,
        note="payment confirmed",
        details={"payment_reference": reference},
    )


async def advance(
    conn: AsyncConnection[Any], redemption_id: str, status: RedemptionStatus, **columns: Any
) -> None:
    """A fulfilment step: the new status and the facts it records (column names are the
    caller's constants, never input)."""
    sets = "".join(f", {name} = %s" for name in columns)
    await conn.execute(
        f"UPDATE redemptions SET status = %s{sets}, updated_at = now() WHERE id = %s",
        (status.value, *columns.values(), redemption_id),
    )


async def refund_points(conn: AsyncConnection[Any], row: dict[str, Any], reason: str) -> None:
    """A sold redemption's points back to the lots they were spent from, as a cancel does
    (give_back); the units stay sold."""
    reference = f"redemption:{row['id']}"
    if row["points_total"] > 0:
        await conn.execute(
            "SELECT restore_lots(%s, %s, %s)", (row["member_id"], reference, row["points_total"])
        )
        await conn.execute(
            "SELECT post_entry(%s, 'refund', %s, 0, %s, %s)",
            (row["member_id"], row["points_total"], reference, reason),
        )
        await points_back.reverse(conn, row, reason)
        await conn.execute("SELECT repay_debt(%s, %s)", (row["member_id"], reference))


async def item_stock(conn: AsyncConnection[Any], item_id: str) -> int:
    """The item's stock on hand, its row locked (after the campaign, member and redemption:
    campaign changes lock campaign then item too)."""
    cur = await conn.execute("SELECT stock_on_hand FROM items WHERE id = %s FOR UPDATE", (item_id,))
    found = await cur.fetchone()
    assert found is not None
    return int(found[0])


async def insert_replacement(
    conn: AsyncConnection[Any], row: dict[str, Any], replacement_id: str, key: str
) -> None:
    """An exchange's replacement: the same member, campaign, quantity and address, zero
    points and zero cash, COMMITTED; linked both ways. It takes nothing from the campaign's
    or the member's counters (the original's units stay sold), only item stock (caller)."""
    await conn.execute(
        "INSERT INTO redemptions (id, member_id, campaign_id, quantity, points_total, "
        "cash_total_cents, status, idempotency_key, request_hash, shipping_address, "
        "replacement_of) SELECT %s, member_id, campaign_id, quantity, 0, 0, 'COMMITTED', %s, "
        "'exchange', shipping_address, id FROM redemptions WHERE id = %s",
        (replacement_id, key, row["id"]),
    )
    await conn.execute(
        "UPDATE redemptions SET replaced_by = %s WHERE id = %s", (replacement_id, row["id"])
    )


async def mirrors(
    conn: AsyncConnection[Any], row: dict[str, Any]
) -> tuple[CampaignMirror, MemberMirror]:
    cur = await conn.execute(
        "SELECT c.units_committed + c.units_held, c.version, "
        "coalesce(cm.units_taken, 0), coalesce(cm.version, 0), "
        "m.points_balance - m.points_held, m.version, m.frozen, m.redemption_eligible "
        "FROM campaigns c JOIN members m ON m.id = %s "
        "LEFT JOIN campaign_members cm ON cm.campaign_id = c.id AND cm.member_id = m.id "
        "WHERE c.id = %s",
        (row["member_id"], row["campaign_id"]),
    )
    r = await cur.fetchone()
    assert r is not None
    return CampaignMirror(r[0], r[1], r[2], r[3]), MemberMirror(r[4], r[5], r[6], r[7])


async def by_key(conn: AsyncConnection[Any], member_id: str, key: str) -> dict[str, Any] | None:
    """The redemption an idempotency key made, if PostgreSQL has it."""
    return await select_one(conn, "r.member_id = %s AND r.idempotency_key = %s", (member_id, key))


async def by_keys(
    conn: AsyncConnection[Any], campaign_id: str, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The campaign's redemptions made by these (member id, idempotency key) pairs, in one
    query. A key that made a redemption on another campaign is not this campaign's."""
    cur = await conn.cursor(row_factory=dict_row).execute(
        f"{SELECT} WHERE r.campaign_id = %s AND (r.member_id, r.idempotency_key) IN "
        "(SELECT * FROM unnest(%s::uuid[], %s::text[]))",
        (campaign_id, [m for m, _ in keys], [k for _, k in keys]),
    )
    return {(row["member_id"], row["idempotency_key"]): row for row in await cur.fetchall()}


async def page_for_member(
    conn: AsyncConnection[Any], member_id: str, *, size: int, after: tuple[datetime, str] | None
) -> list[dict[str, Any]]:
    """Up to `size` of a member's redemptions, newest first, after a (created_at, id) cursor."""
    where, params = "r.member_id = %s", [member_id]
    if after is not None:
        where += " AND (r.created_at, r.id) < (%s, %s::uuid)"
        params += [after[0], after[1]]  # type: ignore[list-item]
    cur = await conn.cursor(row_factory=dict_row).execute(
        f"{SELECT} WHERE {where} ORDER BY r.created_at DESC, r.id DESC LIMIT %s",
        (*params, size),
    )
    return await cur.fetchall()


async def member_exists(conn: AsyncConnection[Any], member_id: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM members WHERE id = %s", (member_id,))
    return await cur.fetchone() is not None


async def overdue_payments(conn: AsyncConnection[Any], limit: int) -> list[str]:
    """Ids of points + cash redemptions whose payment window has passed, oldest first."""
    cur = await conn.execute(
        "SELECT id::text FROM redemptions WHERE status = 'PENDING_PAYMENT' "
        "AND payment_due_at <= now() ORDER BY payment_due_at LIMIT %s",
        (limit,),
    )
    return [r[0] for r in await cur.fetchall()]


def redemption_from_row(row: dict[str, Any]) -> Redemption:
    address = row["shipping_address"]
    return Redemption(
        id=row["id"],
        member_id=row["member_id"],
        campaign_id=row["campaign_id"],
        item_id=row["item_id"],
        quantity=row["quantity"],
        points_total=row["points_total"],
        cash_total_cents=row["cash_total_cents"],
        status=RedemptionStatus(row["status"]),
        redemption_code=row["redemption_code"],
        shipping_address=Address(**address) if address else None,
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        payment_due_at=row["payment_due_at"],
        payment_reference=row["payment_reference"],
        # .get: the fulfilment columns are absent from rows read by other SELECTs (the
        # bench's naive peer), where the redemption has not moved on.
        shipment=Shipment(row["carrier"], row["tracking_number"], row["shipped_at"])
        if row.get("shipped_at") is not None
        else None,
        delivered_at=row.get("delivered_at"),
        return_info=_return_info(row),
        replacement_of=row.get("replacement_of"),
        replaced_by=row.get("replaced_by"),
        list_points_total=row.get("list_points_total"),
        price_rule_id=row.get("price_rule_id"),
        points_back=row.get("points_back") or 0,
        bundle_parts=bundles.from_json(row.get("bundle_parts")),
    )


def _return_info(row: dict[str, Any]) -> ReturnInfo | None:
    if row.get("return_requested_at") is None:
        return None
    disposition = row["return_disposition"]
    return ReturnInfo(
        reason=row["return_reason"],
        requested_at=row["return_requested_at"],
        resolved_at=row["return_resolved_at"],
        disposition=ReturnDisposition(disposition) if disposition else None,
        cash_refund_cents=row["cash_refund_cents"] or 0,
        rejection_reason=row["return_rejection"] or "",
    )
