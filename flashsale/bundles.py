"""Bundles (issue 16): a campaign that sells a set of items, each with a quantity, as one
unit at one price (docs/inventory.md, "Bundles").

A campaign with rows in campaign_bundle_parts (migration 0019) is a bundle. Everything
that counts units in the campaign counts bundles: units_allotted, the Redis gate, the
commit's guards, per-member limits. The stock ledger counts items: allotting N bundles
takes N * quantity of each part's available stock, so "one item short" is caught when the
bundles are allotted, and the scarcest part bounds how many bundles a campaign can hold.
The SQL functions (inventory/sql/stock.sql) join `campaign_parts` and move every part:
stock_redeem at the commit, stock_unredeem at a cancel, stock_release at an end or a cut.
This module is the rest: the parts' validation, the allotment at creation and on a
raise, and a return's units per part.

campaigns.item_id is the first part's item (the lead item), so every reader of a
campaign's item keeps working. Lock order: the parts' item rows by id, then all their
stock levels by (item, location) (stock_lock_items), as one item's writers take them.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from common import validation
from common.errors import InsufficientStock, InvalidArgument, InvalidTransition, NotFound
from flashsale.model import BundlePart
from inventory import stock
from inventory.catalogue import ItemState
from inventory.errors import ItemRetired
from inventory.items import CodeSource

MIN_PARTS = 2
MAX_PARTS = 20
MAX_PART_QUANTITY = 1000


def validate(
    parts: Sequence[BundlePart],
    item_id: str,
    stock_shards: int,
    allotments: Sequence[tuple[str, int]],
) -> tuple[BundlePart, ...]:
    """The parts as given, checked for shape (nothing read). `item_id` may be empty or the
    first part's item (the lead item), nothing else. A bundle is not split into stock
    shards and draws from available stock (no allotments by location): neither is needed
    yet, and each would have to be per part."""
    if not parts:
        return ()
    if stock_shards != 1:
        raise InvalidArgument("stock_shards", "must be 1 for a bundle")
    if allotments:
        raise InvalidArgument("allotments", "a bundle draws from available stock: leave empty")
    if not MIN_PARTS <= len(parts) <= MAX_PARTS:
        raise InvalidArgument(
            "bundle_parts", f"a bundle has {MIN_PARTS} to {MAX_PARTS} parts, not {len(parts)}"
        )
    checked: list[BundlePart] = []
    seen: set[str] = set()
    for i, part in enumerate(parts):
        field = f"bundle_parts[{i}]"
        item = validation.uuid_id(f"{field}.item_id", part.item_id)
        if item in seen:
            raise InvalidArgument(f"{field}.item_id", f"item {item} is already a part")
        seen.add(item)
        validation.int_range(
            f"{field}.quantity", part.quantity, minimum=1, maximum=MAX_PART_QUANTITY
        )
        checked.append(BundlePart(item, part.quantity))
    if item_id and validation.uuid_id("item_id", item_id) != checked[0].item_id:
        raise InvalidArgument("item_id", "must be empty or the first bundle part's item_id")
    return tuple(checked)


async def check_items(
    conn: AsyncConnection[Any], parts: Sequence[BundlePart], bundles: int, *, most: int
) -> int:
    """Locks the parts' items and their levels (stock_lock_items) and checks them: each
    exists, is not retired, is not a code-pool item (a pool gives one code per redemption),
    and all are of one kind. Returns the bundles to allot: `bundles`, or when 0 as many as
    the scarcest part allows (at most `most`). InsufficientStock names the first item
    short."""
    await conn.execute("SELECT stock_lock_items(%s::uuid[])", ([p.item_id for p in parts],))
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id::text, kind, code_source, state, retired_at, stock_on_hand FROM items "
        "WHERE id = ANY (%s::uuid[])",
        ([p.item_id for p in parts],),
    )
    items = {row["id"]: row for row in await cur.fetchall()}
    kind = None
    for i, part in enumerate(parts):
        item = items.get(part.item_id)
        if item is None:
            raise NotFound("item", part.item_id)
        if item["state"] == ItemState.RETIRED:
            raise ItemRetired(part.item_id, item["retired_at"].isoformat())
        if item["code_source"] == CodeSource.POOL.value:
            raise InvalidArgument(
                f"bundle_parts[{i}].item_id",
                "a code-pool item cannot be part of a bundle (one pool code per redemption)",
            )
        if kind is not None and item["kind"] != kind:
            raise InvalidArgument(
                f"bundle_parts[{i}].item_id",
                f"is {item['kind']}: every part of a bundle is of one kind ({kind})",
            )
        kind = item["kind"]
    if bundles == 0:  # as many as the scarcest part allows
        bundles = min(most, *(items[p.item_id]["stock_on_hand"] // p.quantity for p in parts))
        if bundles == 0:
            scarcest = min(parts, key=lambda p: items[p.item_id]["stock_on_hand"] // p.quantity)
            available = items[scarcest.item_id]["stock_on_hand"]
            raise InsufficientStock(scarcest.item_id, available, scarcest.quantity)
    for part in sorted(parts, key=lambda p: p.item_id):
        available = items[part.item_id]["stock_on_hand"]
        if available < bundles * part.quantity:
            raise InsufficientStock(part.item_id, available, bundles * part.quantity)
    return bundles


async def create(
    conn: AsyncConnection[Any], campaign_id: str, parts: Sequence[BundlePart], bundles: int
) -> None:
    """A new bundle campaign's parts and its allotment: `bundles` of each part, drawn from
    the items' available stock (the default location first), in item-id order. Callers
    have run check_items in this transaction."""
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO campaign_bundle_parts (campaign_id, item_id, position, quantity) "
            "VALUES (%s, %s, %s, %s)",
            [(campaign_id, p.item_id, i, p.quantity) for i, p in enumerate(parts, start=1)],
        )
    await _allot(conn, campaign_id, parts, bundles)


async def parts_of(conn: AsyncConnection[Any], campaign_id: str) -> tuple[BundlePart, ...]:
    """A campaign's parts in the order given; empty for a campaign of one item."""
    cur = await conn.execute(
        "SELECT item_id::text, quantity FROM campaign_bundle_parts WHERE campaign_id = %s "
        "ORDER BY position",
        (campaign_id,),
    )
    return tuple(BundlePart(str(r[0]), int(r[1])) for r in await cur.fetchall())


def from_json(value: list[dict[str, Any]] | None) -> tuple[BundlePart, ...]:
    """Parts read as a json_agg of {item_id, quantity} (campaign and redemption reads)."""
    return tuple(BundlePart(str(p["item_id"]), int(p["quantity"])) for p in value or ())


# A read's column: the campaign's parts in order, NULL when it is not a bundle. `c` is the
# campaign's alias in the query.
PARTS_COLUMN = (
    "(SELECT json_agg(json_build_object('item_id', b.item_id, 'quantity', b.quantity) "
    "ORDER BY b.position) FROM campaign_bundle_parts b WHERE b.campaign_id = c.id) "
    "AS bundle_parts"
)


async def change_allotment(
    conn: AsyncConnection[Any], campaign_id: str, parts: Sequence[BundlePart], delta: int
) -> None:
    """An UpdateCampaign moving a bundle's allotment by `delta` bundles (the campaign is
    locked and the cut checked against units taken by the caller)."""
    if delta > 0:
        await check_items(conn, parts, delta, most=delta)
        await _allot(conn, campaign_id, parts, delta)
    elif delta < 0:  # every part (stock_release)
        await stock.release(conn, campaign_id, -delta, reason="campaign allotment lowered")


async def lock_for_return(
    conn: AsyncConnection[Any], row: dict[str, Any], *, exchange: bool
) -> tuple[BundlePart, ...]:
    """Before a return of a redemption (`row`, locked): a bundle's parts, their items
    locked first in id order. An exchange of a bundle is refused (not supported: accept
    the return and redeem again)."""
    parts = await parts_of(conn, row["campaign_id"])
    if parts:
        if exchange:
            raise InvalidTransition(
                row["id"], row["status"], "accept_return", "a bundle cannot be exchanged"
            )
        await conn.execute("SELECT stock_lock_items(%s::uuid[])", ([p.item_id for p in parts],))
    return parts


async def return_units(
    conn: AsyncConnection[Any],
    row: dict[str, Any],
    parts: Sequence[BundlePart],
    *,
    write_off: bool,
    reason: str,
) -> None:
    """A return's units back on hand (written off at once when not fit to sell): the
    redemption's item, or every part of a bundle, quantity times the part's. Runs inside
    the caller's stock.one_change of the lead item; the other parts' low-stock signal is
    settled here, each once."""
    if not parts:
        await stock.return_units(
            conn, row["id"], row["item_id"], row["quantity"], write_off=write_off, reason=reason
        )
        return
    async with AsyncExitStack() as changes:
        for part in sorted(parts, key=lambda p: p.item_id):
            if part.item_id != row["item_id"]:
                await changes.enter_async_context(stock.one_change(conn, part.item_id))
            await stock.return_units(
                conn,
                row["id"],
                part.item_id,
                row["quantity"] * part.quantity,
                write_off=write_off,
                reason=reason,
            )


async def _allot(
    conn: AsyncConnection[Any], campaign_id: str, parts: Sequence[BundlePart], bundles: int
) -> None:
    for part in sorted(parts, key=lambda p: p.item_id):
        await stock.allot(conn, campaign_id, part.item_id, bundles * part.quantity)
