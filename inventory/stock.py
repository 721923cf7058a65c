"""The stock ledger's writes (docs/inventory.md), for callers already in a transaction.

Each is one call of a function of inventory/sql/stock.sql, which writes the movement and
the balances it changes together (so they cannot drift apart) and takes its locks in the
one order every writer uses. Callers check first (an item's stock, a campaign's units) to
answer a clear error; the CHECKs behind these functions are the last word. The actor is
the credential's subject of the call (common.actor)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection

from common import actor


class MovementKind(StrEnum):
    RECEIVED = "received"
    ADJUSTED = "adjusted"
    COUNTED = "counted"
    WRITTEN_OFF = "written_off"
    TRANSFERRED_OUT = "transferred_out"
    TRANSFERRED_IN = "transferred_in"
    RETURNED = "returned"
    ALLOTTED = "allotted"
    RELEASED = "released"
    REDEEMED = "redeemed"
    CANCELLED = "cancelled"


async def default_location(conn: AsyncConnection[Any]) -> str:
    cur = await conn.execute("SELECT stock_default_location()::text")
    row = await cur.fetchone()
    assert row is not None and row[0] is not None  # created by migration 0013
    return str(row[0])


async def add(
    conn: AsyncConnection[Any],
    item_id: str,
    kind: MovementKind,
    units: int,
    *,
    location_id: str | None = None,
    reference: str | None = None,
    reason: str | None = None,
) -> int:
    """`units` (> 0) on hand at a location (the default one when None): received,
    adjusted up, counted up, returned. Returns the movement's id."""
    location = location_id or await default_location(conn)
    cur = await conn.execute(
        "SELECT stock_move(%s, %s, %s, %s, 0, NULL, NULL, %s, %s, %s)",
        (item_id, location, kind.value, units, reference, actor.current().subject, reason),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def take(
    conn: AsyncConnection[Any],
    item_id: str,
    kind: MovementKind,
    units: int,
    *,
    location_id: str | None = None,
    campaign_id: str | None = None,
    redemption_id: str | None = None,
    reference: str | None = None,
    reason: str | None = None,
) -> list[tuple[str, int]]:
    """`units` (> 0) of available stock out (adjusted down, written off, an exchange's
    replacement redeemed): from a location, or when None from the item's locations in
    order (the default first). Returns (location id, units) taken from each."""
    cur = await conn.execute(
        "SELECT location_id::text, units FROM stock_take_available("
        "%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            item_id,
            units,
            location_id,
            kind.value,
            campaign_id,
            redemption_id,
            reference,
            actor.current().subject,
            reason,
        ),
    )
    return [(str(r[0]), int(r[1])) for r in await cur.fetchall()]


async def allot(
    conn: AsyncConnection[Any],
    campaign_id: str,
    item_id: str,
    units: int,
    *,
    location_id: str | None = None,
    reason: str = "campaign allotment",
) -> None:
    """A campaign's allotment grows by `units` of the item's available stock."""
    await conn.execute(
        "SELECT stock_allot(%s, %s, %s, %s, %s, %s)",
        (campaign_id, item_id, units, location_id, actor.current().subject, reason),
    )


async def release(conn: AsyncConnection[Any], campaign_id: str, units: int, *, reason: str) -> None:
    """`units` of a campaign's allotment (neither sold nor held) back to available."""
    await conn.execute(
        "SELECT stock_release(%s, %s, %s, %s)",
        (campaign_id, units, actor.current().subject, reason),
    )


async def redeem(
    conn: AsyncConnection[Any], redemption_id: str, campaign_id: str, qty: int
) -> None:
    """One redemption's units out of its campaign's allotment (a confirmed payment; the
    group commit calls stock_redeem for its whole batch itself)."""
    await conn.execute(
        "SELECT stock_redeem(ARRAY[%s]::uuid[], ARRAY[%s]::uuid[], ARRAY[%s]::integer[], %s)",
        (redemption_id, campaign_id, qty, actor.current().subject),
    )


async def unredeem(conn: AsyncConnection[Any], redemption_id: str, *, reason: str) -> None:
    """A cancelled redemption's units back into its campaign's allotment."""
    await conn.execute(
        "SELECT stock_unredeem(%s, %s, %s)", (redemption_id, actor.current().subject, reason)
    )


async def return_units(
    conn: AsyncConnection[Any],
    redemption_id: str,
    item_id: str,
    units: int,
    *,
    write_off: bool,
    reason: str,
) -> None:
    """A return's units back on hand where they were redeemed from; written off at once
    when they are not fit to sell again."""
    await conn.execute(
        "SELECT stock_return(%s, %s, %s, %s, %s, %s)",
        (redemption_id, item_id, units, write_off, actor.current().subject, reason),
    )


@asynccontextmanager
async def one_change(conn: AsyncConnection[Any], item_id: str) -> AsyncIterator[None]:
    """Movements that make one change of the item (a transfer's two halves, a return and
    its write-off or exchange): the low-stock signal looks at the item once, at the end, so
    a change that nets to nothing signals nothing. An error rolls the transaction back,
    deferral included (it is transaction-local)."""
    await conn.execute("SELECT stock_low_defer()")
    yield
    await conn.execute("SELECT stock_low_settle(%s, %s)", (item_id, actor.current().subject))
