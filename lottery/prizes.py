"""Prize campaigns (stage B): each GOOD prize with stock is delivered through a campaign of
its own, so a won prize becomes a redemption that follows the normal lifecycle (stock
ledger, codes, events, fulfilment). Created with the lottery, in its transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from common.errors import InsufficientStock, InvalidArgument
from inventory import codes, stock
from inventory.catalogue import ItemState
from lottery.model import Prize, PrizeKind


async def create_campaigns(
    conn: AsyncConnection[Any],
    *,
    lottery_name: str,
    starts_at: datetime,
    ends_at: datetime,
    per_member_total: int,
    prizes: tuple[Prize, ...],
) -> None:
    """One campaign per GOOD prize with stock: units_allotted = its stock, taken out of
    the item's available stock (InsufficientStock otherwise), price 0, the lottery's
    window, marked lottery_prize. Items are locked in id order (the catalogue's order)."""
    goods = sorted(
        (p for p in prizes if p.kind is PrizeKind.GOOD and (p.stock or 0) > 0),
        key=lambda p: p.item_id or "",
    )
    cur = conn.cursor(row_factory=dict_row)
    for p in goods:
        assert p.item_id is not None and p.stock is not None
        field = f"prizes[{p.position}]"
        await cur.execute(
            "SELECT stock_on_hand, state FROM items WHERE id = %s FOR UPDATE", (p.item_id,)
        )
        item = await cur.fetchone()
        assert item is not None  # checked by the caller, under this transaction
        if item["state"] == ItemState.RETIRED:
            raise InvalidArgument(field + ".item_id", "names a retired item")
        await codes.check_promise(conn, p.item_id, field=field + ".stock", units=p.stock)
        if item["stock_on_hand"] < p.stock:
            raise InsufficientStock(p.item_id, item["stock_on_hand"], p.stock)
        await cur.execute(
            "INSERT INTO campaigns (item_id, name, units_allotted, points_price, "
            "cash_price_cents, per_member_limit, starts_at, ends_at, lottery_prize) "
            "VALUES (%s, %s, %s, 0, 0, %s, %s, %s, true) RETURNING id::text",
            (
                p.item_id,
                f"{lottery_name}: {p.name}",
                p.stock,
                per_member_total,
                starts_at,
                ends_at,
            ),
        )
        created = await cur.fetchone()
        assert created is not None
        await stock.allot(conn, created["id"], p.item_id, p.stock, reason="lottery prize")
        await cur.execute(
            "UPDATE lottery_prizes SET campaign_id = %s WHERE id = %s", (created["id"], p.id)
        )


async def goods(conn: AsyncConnection[Any], lottery_id: str) -> dict[str, tuple[bool, bool]]:
    """Per GOOD prize id: (its item is physical, its codes come from a pool)."""
    cur = await conn.execute(
        "SELECT p.id::text, i.kind = 'PHYSICAL', i.code_source = 'POOL' "
        "FROM lottery_prizes p JOIN items i ON i.id = p.item_id WHERE p.lottery_id = %s",
        (lottery_id,),
    )
    return {r[0]: (bool(r[1]), bool(r[2])) for r in await cur.fetchall()}
