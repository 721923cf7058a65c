"""The catalogue: items, their kind, and stock on hand, changed only by keyed adjustments
and by campaigns allotting units. Creating an item and adjusting its stock are operator
changes: each writes its audit event (auditlog) in its own transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

import auditlog
import events
from common import actor, create_requests, validation
from common.errors import (
    AlreadyExists,
    IdempotencyKeyReused,
    InsufficientStock,
    InvalidArgument,
    NotFound,
)
from inventory import catalogue, locations, stock
from inventory.catalogue import NO_DETAILS, ItemDetails, ItemState
from inventory.errors import InsufficientStockAt
from inventory.stock import MovementKind

_SKU_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")  # with fullmatch: "$" lets a trailing "\n" in
MAX_STOCK = 10**9
# The movements an AdjustStock may write, and the sign of delta each allows (None: either).
ADJUSTMENT_KINDS = {
    MovementKind.ADJUSTED: None,
    MovementKind.RECEIVED: 1,
    MovementKind.WRITTEN_OFF: -1,
}


class ItemKind(StrEnum):
    PHYSICAL = "PHYSICAL"
    VIRTUAL = "VIRTUAL"
    SERVICE = "SERVICE"


class CodeSource(StrEnum):
    """Where a virtual item's redemption codes come from: made at commit, or taken from the
    pool the operator loaded (inventory/codes.py)."""

    GENERATED = "GENERATED"
    POOL = "POOL"


@dataclass(frozen=True)
class Item:
    id: str
    sku: str
    name: str
    kind: ItemKind
    stock_on_hand: int
    created_at: datetime
    code_source: CodeSource = CodeSource.GENERATED
    # The catalogue's (inventory/catalogue.py, migration 0014).
    description: str = ""
    category: str | None = None
    state: ItemState = ItemState.ACTIVE
    retired_at: datetime | None = None
    product_id: str | None = None
    variant_attributes: dict[str, str] = field(default_factory=dict)
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Adjusted:
    item: Item
    adjustment_id: str
    replayed: bool


_COLUMNS = (
    "id::text, sku, name, kind, stock_on_hand, created_at, code_source, " + catalogue.DETAIL_COLUMNS
)


class Catalog:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def create_item(
        self,
        *,
        sku: str,
        name: str,
        kind: ItemKind,
        initial_stock: int,
        code_source: CodeSource = CodeSource.GENERATED,
        details: ItemDetails = NO_DETAILS,
        location_code: str = "",
        request_id: str = "",
    ) -> Item:
        """request_id (AIP-155, common/create_requests.py): the same request again answers
        the item it made, its initial stock received once; another request under it is
        RequestIdReused. A taken SKU: AlreadyExists naming the item that has it."""
        if not _SKU_RE.fullmatch(sku):
            raise InvalidArgument("sku", "must be 1..64 characters of A-Z a-z 0-9 . _ -")
        name = validation.text("name", name, max_length=validation.MAX_NAME_LENGTH, required=True)
        validation.int_range("initial_stock", initial_stock, minimum=0, maximum=MAX_STOCK)
        if code_source is CodeSource.POOL and kind is not ItemKind.VIRTUAL:
            raise InvalidArgument("code_source", "CODE_SOURCE_POOL is for ITEM_KIND_VIRTUAL items")
        if location_code:
            locations.valid_code("location_code", location_code)
        request = create_requests.of(
            create_requests.ITEM,
            request_id,
            sku=sku,
            name=name,
            kind=kind,
            initial_stock=initial_stock,
            code_source=code_source,
            details=details,
            location_code=location_code,
        )
        try:
            row = await self._insert(
                request, sku, name, kind, initial_stock, code_source, details, location_code
            )
        except create_requests.Replayed as replay:
            return await self.get_item(replay.resource_id)
        return _item(row)

    async def _insert(
        self,
        request: create_requests.CreateRequest | None,
        sku: str,
        name: str,
        kind: ItemKind,
        initial_stock: int,
        code_source: CodeSource,
        details: ItemDetails,
        location_code: str,
    ) -> dict[str, Any]:
        async with self._pool.connection() as conn, conn.transaction():
            await create_requests.claim(conn, request)
            # Where the initial stock is received (None: the default location).
            location = await locations.location_id(conn, location_code) if location_code else None
            cur = await conn.cursor(row_factory=dict_row).execute(
                "INSERT INTO items (sku, name, kind, stock_on_hand, code_source) "
                "VALUES (%s, %s, %s, 0, %s) ON CONFLICT (sku) DO NOTHING RETURNING id::text",
                (sku, name, kind.value, code_source.value),
            )
            created = await cur.fetchone()
            if created is None:  # the statement after the conflict sees the committed holder
                found = await conn.execute("SELECT id::text FROM items WHERE sku = %s", (sku,))
                holder = await found.fetchone()
                raise AlreadyExists("item", "sku", sku, str(holder[0]) if holder else "")
            await create_requests.record(conn, request, created["id"])
            if details != NO_DETAILS:
                await catalogue.attach(conn, created["id"], details)
            if initial_stock:  # the item's first movement
                await stock.add(
                    conn,
                    created["id"],
                    MovementKind.RECEIVED,
                    initial_stock,
                    location_id=location,
                    reason="initial stock",
                )
            row = await _read(conn, created["id"])
            await auditlog.record(
                conn,
                auditlog.CREATE_ITEM,
                target_kind=auditlog.ITEM,
                target_id=row["id"],
                content={
                    "sku": sku,
                    "name": name,
                    "kind": kind.value,
                    "initial_stock": initial_stock,
                    "code_source": code_source.value,
                    **details.audit(),
                }
                | ({"location_code": location_code} if location_code else {}),
            )
        return row

    async def get_item(self, item_id: str) -> Item:
        item_id = validation.uuid_id("item_id", item_id)
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"SELECT {_COLUMNS} FROM items WHERE id = %s", (item_id,)
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound("item", item_id)
        return _item(row)

    async def adjust_stock(
        self,
        *,
        item_id: str,
        delta: int,
        reason: str,
        idempotency_key: str,
        location_code: str = "",
        kind: MovementKind = MovementKind.ADJUSTED,
    ) -> Adjusted:
        item_id = validation.uuid_id("item_id", item_id)
        if delta == 0:
            raise InvalidArgument("delta", "must not be zero")
        validation.int_range("delta", delta, minimum=-MAX_STOCK, maximum=MAX_STOCK)
        if kind not in ADJUSTMENT_KINDS:
            raise InvalidArgument("movement_kind", "must be ADJUSTED, RECEIVED or WRITTEN_OFF")
        sign = ADJUSTMENT_KINDS[kind]
        if sign is not None and sign * delta < 0:
            raise InvalidArgument(
                "movement_kind", f"{kind.name} needs delta {'> 0' if sign > 0 else '< 0'}"
            )
        if location_code:
            locations.valid_code("location_code", location_code)
        reason = validation.text(
            "reason", reason, max_length=validation.MAX_REASON_LENGTH, required=True
        )
        key = validation.idempotency_key("idempotency_key", idempotency_key)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"SELECT {_COLUMNS} FROM items WHERE id = %s FOR UPDATE", (item_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound("item", item_id)
            location = await locations.location_id(conn, location_code) if location_code else None
            await cur.execute(
                "SELECT id::text, delta, reason, location_id::text, movement_kind "
                "FROM stock_adjustments WHERE item_id = %s AND idempotency_key = %s",
                (item_id, key),
            )
            previous = await cur.fetchone()
            if previous is not None:
                asked = (delta, reason, location, kind.value)
                if asked != (
                    previous["delta"],
                    previous["reason"],
                    previous["location_id"],
                    previous["movement_kind"],
                ):
                    raise IdempotencyKeyReused(key)
                return Adjusted(_item(row), previous["id"], replayed=True)
            if row["stock_on_hand"] + delta < 0:
                raise InsufficientStock(item_id, row["stock_on_hand"], -delta)
            if location is not None and delta < 0:
                there = (await locations.available_at(conn, item_id)).get(location, 0)
                if there + delta < 0:
                    raise InsufficientStockAt(item_id, location_code, there, -delta)
            await cur.execute(
                "INSERT INTO stock_adjustments (item_id, delta, reason, idempotency_key, "
                "stock_after, location_id, movement_kind) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "RETURNING id::text",
                (item_id, delta, reason, key, row["stock_on_hand"] + delta, location, kind.value),
            )
            adjustment = await cur.fetchone()
            assert adjustment is not None
            # The ledger's movement: units added at the location named (the default one when
            # none is), or taken from its available stock (none named: where there is some,
            # the default location first).
            reference = f"adjustment:{adjustment['id']}"
            if delta > 0:
                await stock.add(
                    conn,
                    item_id,
                    kind,
                    delta,
                    location_id=location,
                    reference=reference,
                    reason=reason,
                )
            else:
                await stock.take(
                    conn,
                    item_id,
                    kind,
                    -delta,
                    location_id=location,
                    reference=reference,
                    reason=reason,
                )
            updated = await _read(conn, item_id)
            # The outbox (docs/events.md), in the same transaction as the change.
            await events.append(
                conn,
                events.EventType.STOCK_ADJUSTED,
                "item",
                item_id,
                {
                    "item_id": item_id,
                    "adjustment_id": adjustment["id"],
                    "delta": delta,
                    "stock_after": updated["stock_on_hand"],
                    "reason": reason,
                    "movement_kind": kind.value,
                    "location_code": location_code or None,
                },
                actor=actor.current().subject,
            )
            await auditlog.record(
                conn,
                auditlog.ADJUST_STOCK,
                target_kind=auditlog.ITEM,
                target_id=item_id,
                content={
                    "item_id": item_id,
                    "delta": delta,
                    "reason": reason,
                    "idempotency_key": key,
                }
                # What a plain adjustment recorded before, plus what this one named.
                | ({"movement_kind": kind.value} if kind is not MovementKind.ADJUSTED else {})
                | ({"location_code": location_code} if location_code else {}),
            )
        return Adjusted(_item(updated), adjustment["id"], replayed=False)


async def _read(conn: psycopg.AsyncConnection[Any], item_id: str) -> dict[str, Any]:
    cur = await conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_COLUMNS} FROM items WHERE id = %s", (item_id,)
    )
    row = await cur.fetchone()
    assert row is not None
    return row


def _item(row: dict[str, object]) -> Item:
    return Item(
        id=str(row["id"]),
        sku=str(row["sku"]),
        name=str(row["name"]),
        kind=ItemKind(str(row["kind"])),
        stock_on_hand=int(row["stock_on_hand"]),  # type: ignore[call-overload]
        created_at=row["created_at"],  # type: ignore[arg-type]
        code_source=CodeSource(str(row["code_source"])),
        description=str(row.get("description") or ""),
        category=row.get("category"),  # type: ignore[arg-type]
        state=ItemState(str(row.get("state") or ItemState.ACTIVE)),
        retired_at=row.get("retired_at"),  # type: ignore[arg-type]
        product_id=row.get("product_id"),  # type: ignore[arg-type]
        variant_attributes=catalogue.attributes_of(row.get("variant_attributes")),
        updated_at=row.get("updated_at"),  # type: ignore[arg-type]
    )


# The catalogue's reads and changes (inventory/listing.py, products.py, changes.py) select
# and convert item rows exactly as this module does.
COLUMNS = _COLUMNS
SKU_RE = _SKU_RE
item_from_row = _item
