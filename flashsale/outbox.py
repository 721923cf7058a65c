"""The flash sale's events (docs/events.md), written in the transaction of the change they
record: a redemption committed by a payment, cancelled or expired; a campaign sold out or
reopened by a change that is not the group commit (commit_redemptions writes its own, in
flashsale/sql/commit_redemptions.sql).

A campaign is sold out when PostgreSQL has no unit left to sell (allotted = committed +
held); it reopens when a cancel, an expiry or a larger allotment gives units back while the
sale is still running. Every function here expects the caller to hold the campaign's lock.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

import events
from common import actor
from flashsale.model import SOLD_SQL, RedemptionStatus

_TYPE_BY_STATUS = {
    RedemptionStatus.COMMITTED: events.EventType.REDEMPTION_COMMITTED,
    RedemptionStatus.CANCELLED: events.EventType.REDEMPTION_CANCELLED,
    RedemptionStatus.EXPIRED: events.EventType.REDEMPTION_EXPIRED,
}


def _actor() -> str | None:
    """The credential's subject for a call (a gateway, an operator, the payment service);
    None for the service's own changes (the sweeper's expiry)."""
    current = actor.current()
    return None if current is actor.SYSTEM else current.subject


async def _campaign(conn: AsyncConnection[Any], campaign_id: str) -> tuple[str, int, int, bool]:
    """(item id, units allotted, units available now, sale still running)."""
    cur = await conn.execute(
        "SELECT item_id::text, units_allotted, units_allotted - units_committed - units_held, "
        "ends_at > now() FROM campaigns WHERE id = %s",
        (campaign_id,),
    )
    row = await cur.fetchone()
    assert row is not None  # redemptions.campaign_id is a foreign key
    return row[0], row[1], row[2], row[3]


async def redemption_changed(
    conn: AsyncConnection[Any],
    row: dict[str, Any],
    status: RedemptionStatus,
    *,
    reason: str = "",
    units_returned: bool,
) -> None:
    """The redemption's event for its new status, and campaign.reopened when the units it
    gave back (units_returned) were the first a sold-out running sale got back. `row` is
    store.lock's row, read before the change."""
    item_id, allotted, available, running = await _campaign(conn, row["campaign_id"])
    payload: dict[str, Any] = {
        "redemption_id": row["id"],
        "member_id": row["member_id"],
        "campaign_id": row["campaign_id"],
        "item_id": item_id,
        "quantity": row["quantity"],
        "points_total": row["points_total"],
        "cash_total_cents": row["cash_total_cents"],
        "status": status.value,
        "previous_status": row["status"],
    }
    if reason:
        payload["reason"] = reason
    who = _actor()
    await events.append(conn, _TYPE_BY_STATUS[status], "redemption", row["id"], payload, who)
    if units_returned and running and available > 0 and available - row["quantity"] <= 0:
        await _availability(conn, row["campaign_id"], item_id, allotted, available, who)


async def allotment_changed(
    conn: AsyncConnection[Any], campaign_id: str, *, available_before: int
) -> None:
    """After an operator changed a campaign's allotment: sold out or reopened when the
    change crossed zero units available."""
    item_id, allotted, available, running = await _campaign(conn, campaign_id)
    if running and (available_before > 0) != (available > 0):
        await _availability(conn, campaign_id, item_id, allotted, available, _actor())


async def _availability(
    conn: AsyncConnection[Any],
    campaign_id: str,
    item_id: str,
    allotted: int,
    available: int,
    who: str | None,
) -> None:
    type_ = (
        events.EventType.CAMPAIGN_REOPENED if available > 0 else events.EventType.CAMPAIGN_SOLD_OUT
    )
    payload = {
        "campaign_id": campaign_id,
        "item_id": item_id,
        "units_allotted": allotted,
        "units_available": available,
    }
    await events.append(conn, type_, "campaign", campaign_id, payload, who)


# For the audit (flashsale/audit.py, `surge audit`, the load test): events and rows agree.
# Each redemption that reached COMMITTED (sold: COMMITTED or a fulfilment state after it, or
# cancelled from one of them) has
# exactly one redemption.committed event; one that never did (pending, expired, cancelled
# while pending) has none; and no such event names a redemption PostgreSQL does not have (a
# refusal). Redemptions older than the oldest event kept are not checked (retention pruned
# theirs, or they predate the outbox); with no event at all, nothing is.
AUDIT_CHECKS: list[tuple[str, str]] = [
    (
        "redemption.committed events disagree with redemptions",
        "WITH ev AS ("
        " SELECT subject_id::uuid AS id,"
        " count(*) FILTER (WHERE type = 'redemption.committed') AS committed,"
        " coalesce(bool_or(type = 'redemption.cancelled'"
        f" AND payload->>'previous_status' IN {SOLD_SQL}), false) AS cancelled_after"
        " FROM events WHERE subject_kind = 'redemption' GROUP BY subject_id),"
        " since AS (SELECT min(occurred_at) AS t FROM events) "
        "SELECT coalesce(r.id, ev.id)::text, r.status, coalesce(ev.committed, 0) "
        "FROM since, redemptions r FULL JOIN ev ON ev.id = r.id "
        "WHERE (r.id IS NULL AND ev.committed > 0) "
        "OR (r.id IS NOT NULL AND r.created_at >= since.t AND coalesce(ev.committed, 0) <> "
        f"CASE WHEN r.status IN {SOLD_SQL} OR coalesce(ev.cancelled_after, false) "
        "THEN 1 ELSE 0 END)",
    ),
]
