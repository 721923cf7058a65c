"""A redemption's history: one row per step after the first, written in the step's
transaction (flashsale/fulfilment.py; cancel, expiry and payment through store.give_back and
store.confirm), read oldest first.

The first step is not stored: the group commit (commit_redemptions) is the hot path and
writes nothing here. It is synthesized on reading from the redemption row: COMMITTED (or
PENDING_PAYMENT for points + cash, or COMMITTED for an exchange's replacement) at
created_at, by the member (or, for a replacement, by whoever accepted the return, whose
step is on the original)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from flashsale.model import HistoryEntry, RedemptionStatus


async def record(
    conn: AsyncConnection[Any],
    redemption_id: str,
    status: RedemptionStatus,
    *,
    actor: str,
    note: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """One step, inside the caller's transaction (so it commits with the step or not at all)."""
    await conn.execute(
        "INSERT INTO redemption_history (redemption_id, state, actor, note, details) "
        "VALUES (%s, %s, %s, %s, %s)",
        (redemption_id, status.value, actor or "system", note, Jsonb(details or {})),
    )


async def entries(conn: AsyncConnection[Any], row: dict[str, Any]) -> tuple[HistoryEntry, ...]:
    """The redemption's steps, oldest first, the synthesized first one included. `row` is a
    store.SELECT row."""
    cur = await conn.execute(
        "SELECT state, at, actor, note FROM redemption_history WHERE redemption_id = %s "
        "ORDER BY id",
        (row["id"],),
    )
    stored = [
        HistoryEntry(RedemptionStatus(s), at, actor, note)
        for s, at, actor, note in await cur.fetchall()
    ]
    return (first_entry(row), *stored)


def first_entry(row: dict[str, Any]) -> HistoryEntry:
    if row["replacement_of"] is not None:
        return HistoryEntry(
            RedemptionStatus.COMMITTED,
            row["created_at"],
            "system",
            f"exchange: replaces redemption {row['replacement_of']}",
        )
    pending = row["payment_due_at"] is not None
    status = RedemptionStatus.PENDING_PAYMENT if pending else RedemptionStatus.COMMITTED
    return HistoryEntry(status, row["created_at"], f"member:{row['member_id']}", "redeemed")
