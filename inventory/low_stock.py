"""The low-stock signal (issue 20 item 4): a per-item threshold on available units.

An item is low while its available units (items.stock_on_hand: on hand minus allotted to
campaigns, over all locations) are below its threshold; no threshold, never low. The verdict
is kept in items.stock_low (migration 0016) and re-evaluated wherever available stock
changes: inside stock_move (inventory/sql/stock.sql), under the item's row lock, which
calls stock_low_check (inventory/sql/low_stock.sql) and writes stock.low / stock.replenished
once per crossing. Setting or clearing a threshold re-evaluates at once, in the same
transaction (crossing events then too). The group commit redeems from campaign allotments,
which leaves available stock as it was: the hot path never runs any of this.

The gauges (surge_stock_low_items, surge_stock_available{item_id},
surge_stock_low_threshold{item_id}) are refreshed by the sweeper from `watched()`, as the
code pools' gauge is: one series per item with a threshold, bounded by MAX_WATCHED_SERIES.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

import auditlog
from common import actor, paging, validation
from common.errors import NotFound
from inventory.items import MAX_STOCK

# Series per gauge: the items with a threshold, the lowest available first past this many
# (an operator watching more items than this reads ListLowStockItems, not a dashboard).
MAX_WATCHED_SERIES = 500


@dataclass(frozen=True)
class StockStatus:
    item_id: str
    sku: str
    name: str
    available: int
    on_hand: int
    allotted: int
    threshold: int | None
    low: bool


@dataclass(frozen=True)
class LowStockPage:
    items: list[StockStatus]
    next_page_token: str


@dataclass(frozen=True)
class Watched:
    """What the gauges show: every watched item's available units and threshold."""

    low_items: int
    available: dict[str, int]
    thresholds: dict[str, int]


# On hand and allotted summed over the item's locations; available is items.stock_on_hand.
_STATUS = (
    "SELECT i.id::text AS item_id, i.sku, i.name, i.stock_on_hand AS available, "
    "i.low_stock_threshold AS threshold, i.stock_low AS low, i.created_at, "
    "coalesce(s.on_hand, 0) AS on_hand, coalesce(s.allotted, 0) AS allotted "
    "FROM items i LEFT JOIN LATERAL (SELECT sum(on_hand)::bigint AS on_hand, "
    "sum(allotted)::bigint AS allotted FROM stock_levels l WHERE l.item_id = i.id) s ON true "
)


class LowStock:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def set_threshold(self, item_id: str, threshold: int | None) -> StockStatus:
        """Sets (None: clears) the item's threshold and re-evaluates it at once."""
        item_id = validation.uuid_id("item_id", item_id)
        if threshold is not None:
            validation.int_range("threshold", threshold, minimum=0, maximum=MAX_STOCK)
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT low_stock_threshold FROM items WHERE id = %s FOR UPDATE", (item_id,)
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound("item", item_id)
            await conn.execute(
                "UPDATE items SET low_stock_threshold = %s WHERE id = %s", (threshold, item_id)
            )
            # Under the row lock just taken: the crossing event, if any, commits with it.
            await conn.execute("SELECT stock_low_check(%s, %s)", (item_id, actor.current().subject))
            await auditlog.record(
                conn,
                auditlog.SET_LOW_STOCK_THRESHOLD,
                target_kind=auditlog.ITEM,
                target_id=item_id,
                content={"item_id": item_id, "threshold": threshold, "previous": row[0]},
            )
            status = await _status(conn, item_id)
        return status

    async def list_low(self, *, page_size: int, page_token: str) -> LowStockPage:
        """Items below their threshold, oldest item first (keyset over created_at, id)."""
        size = paging.page_size(page_size)
        after = paging.decode(page_token)
        where = "WHERE i.low_stock_threshold IS NOT NULL AND i.stock_low"
        params: list[Any] = []
        if after is not None:
            where += " AND (i.created_at, i.id) > (%s, %s::uuid)"
            params += [after[0], validation.uuid_id("page_token", after[1])]
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"{_STATUS}{where} ORDER BY i.created_at, i.id LIMIT %s", (*params, size + 1)
            )
            rows = await cur.fetchall()
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = paging.encode(rows[-1]["created_at"], rows[-1]["item_id"])
        return LowStockPage([_from_row(r) for r in rows], token)

    async def watched(self) -> Watched:
        """The gauges' values: one indexed read of the items with a threshold."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FILTER (WHERE stock_low) FROM items "
                "WHERE low_stock_threshold IS NOT NULL"
            )
            row = await cur.fetchone()
            cur = await conn.execute(
                "SELECT id::text, stock_on_hand, low_stock_threshold FROM items "
                "WHERE low_stock_threshold IS NOT NULL "
                "ORDER BY stock_on_hand - low_stock_threshold, id LIMIT %s",
                (MAX_WATCHED_SERIES,),
            )
            rows = await cur.fetchall()
        return Watched(
            low_items=int(row[0]) if row else 0,
            available={r[0]: int(r[1]) for r in rows},
            thresholds={r[0]: int(r[2]) for r in rows},
        )


async def _status(conn: Any, item_id: str) -> StockStatus:
    cur = await conn.cursor(row_factory=dict_row).execute(f"{_STATUS}WHERE i.id = %s", (item_id,))
    row = await cur.fetchone()
    assert row is not None
    return _from_row(row)


def _from_row(row: dict[str, Any]) -> StockStatus:
    return StockStatus(
        item_id=row["item_id"],
        sku=row["sku"],
        name=row["name"],
        available=int(row["available"]),
        on_hand=int(row["on_hand"]),
        allotted=int(row["allotted"]),
        threshold=None if row["threshold"] is None else int(row["threshold"]),
        low=bool(row["low"]),
    )
