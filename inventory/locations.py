"""Locations: the named places stock lives in (warehouses, stores), and transfers of an
item's available stock between them (docs/inventory.md). The location 'default' (created
by migration 0013) holds the stock of every call that names none.

A transfer is two movements of the stock ledger in one transaction, through
inventory/stock.py: 'transferred_out' at the source, 'transferred_in' at the destination,
both referencing 'transfer:<id>'. Only available units move (on hand and not allotted to a
campaign): a campaign's units stay where it drew them. Creating a location and a transfer
are operator changes: each writes its audit event in its own transaction, and a transfer
its outbox event."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

import auditlog
import events
from common import actor, validation
from common.errors import AlreadyExists, IdempotencyKeyReused, InvalidArgument, NotFound
from inventory import stock
from inventory.errors import InsufficientStockAt
from inventory.stock import MovementKind

# As the CHECK of locations.code (migration 0013). fullmatch: "$" would let a "\n" in.
_CODE_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
DEFAULT_CODE = "default"
MAX_QUANTITY = 10**9


@dataclass(frozen=True)
class Location:
    id: str
    code: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class Transfer:
    id: str
    item_id: str
    from_code: str
    to_code: str
    quantity: int
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class Transferred:
    transfer: Transfer
    replayed: bool


def valid_code(field: str, value: str) -> str:
    """A location code's form (whether it exists is location_id's question)."""
    if not value:
        raise InvalidArgument(field, "is required")
    if not _CODE_RE.fullmatch(value):
        raise InvalidArgument(field, "must match ^[a-z0-9][a-z0-9._-]{0,63}$ (a lower-case slug)")
    return value


async def location_id(
    conn: psycopg.AsyncConnection[Any], value: str, *, field: str = "location_code"
) -> str:
    """The id of the location with this code: InvalidArgument(field) if malformed,
    NotFound('location', code) if there is none."""
    cur = await conn.execute(
        "SELECT id::text FROM locations WHERE code = %s", (valid_code(field, value),)
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound("location", value)
    return str(row[0])


async def available_at(conn: psycopg.AsyncConnection[Any], item_id: str) -> dict[str, int]:
    """The item's available units (on hand - allotted) by location id, its levels locked in
    the one order (docs/inventory.md): the caller holds the item row FOR UPDATE, which every
    writer of available stock takes first, so the answer holds until it commits."""
    cur = await conn.execute(
        "SELECT location_id::text, on_hand - allotted FROM stock_levels WHERE item_id = %s "
        "ORDER BY location_id FOR UPDATE",
        (item_id,),
    )
    return {str(r[0]): int(r[1]) for r in await cur.fetchall()}


def check_allotments(allotments: Sequence[tuple[str, int]], units_allotted: int) -> None:
    """A campaign's allotments by location (code, units), before any is looked up: each
    location once, units > 0, adding up to units_allotted."""
    seen: set[str] = set()
    for location, units in allotments:
        valid_code("allotments", location)
        if location in seen:
            raise InvalidArgument("allotments", f"names location {location!r} twice")
        seen.add(location)
        if units <= 0:
            raise InvalidArgument("allotments", f"units at {location!r} must be above 0")
    total = sum(units for _, units in allotments)
    if allotments and total != units_allotted:
        raise InvalidArgument(
            "allotments", f"units add up to {total}, units_allotted is {units_allotted}"
        )


async def resolve_allotments(
    conn: psycopg.AsyncConnection[Any], item_id: str, allotments: Sequence[tuple[str, int]]
) -> list[tuple[str, int]]:
    """(location id, units) of each allotment, in the given order, after checking each
    location has the units available (the caller holds the item row FOR UPDATE)."""
    resolved = [
        (await location_id(conn, location, field="allotments"), location, units)
        for location, units in allotments
    ]
    available = await available_at(conn, item_id)
    for found, location, units in resolved:
        if available.get(found, 0) < units:
            raise InsufficientStockAt(item_id, location, available.get(found, 0), units)
    return [(found, units) for found, _, units in resolved]


class Locations:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def create(self, *, code: str, name: str) -> tuple[Location, bool]:
        """The new location, False; or the existing one with this code and name, True."""
        code = valid_code("code", code)
        name = validation.text("name", name, max_length=validation.MAX_NAME_LENGTH, required=True)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "INSERT INTO locations (code, name) VALUES (%s, %s) ON CONFLICT (code) "
                "DO NOTHING RETURNING id::text, code, name, created_at",
                (code, name),
            )
            created = await cur.fetchone()
            if created is None:  # taken: a retry of the same request, or a clash
                await cur.execute(
                    "SELECT id::text, code, name, created_at FROM locations WHERE code = %s",
                    (code,),
                )
                existing = await cur.fetchone()
                assert existing is not None  # locations are never deleted
                if existing["name"] != name:
                    raise AlreadyExists("location", "code", code)
                return Location(**existing), True
            await auditlog.record(
                conn,
                auditlog.CREATE_LOCATION,
                target_kind=auditlog.LOCATION,
                target_id=created["id"],
                content={"code": code, "name": name},
            )
        return Location(**created), False

    async def list_all(self) -> list[Location]:
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                "SELECT id::text, code, name, created_at FROM locations ORDER BY code <> %s, code",
                (DEFAULT_CODE,),
            )
            return [Location(**row) for row in await cur.fetchall()]

    async def transfer(
        self,
        *,
        item_id: str,
        from_code: str,
        to_code: str,
        quantity: int,
        reason: str,
        idempotency_key: str,
    ) -> Transferred:
        item_id = validation.uuid_id("item_id", item_id)
        valid_code("from_location_code", from_code)
        valid_code("to_location_code", to_code)
        if from_code == to_code:
            raise InvalidArgument("to_location_code", "must differ from from_location_code")
        validation.positive("quantity", quantity)
        validation.int_range("quantity", quantity, minimum=1, maximum=MAX_QUANTITY)
        reason = validation.text(
            "reason", reason, max_length=validation.MAX_REASON_LENGTH, required=True
        )
        key = validation.idempotency_key("idempotency_key", idempotency_key)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            # Lock order: the item row first (it also serialises two calls with one key),
            # then its levels by location id (available_at).
            await cur.execute("SELECT 1 FROM items WHERE id = %s FOR UPDATE", (item_id,))
            if await cur.fetchone() is None:
                raise NotFound("item", item_id)
            source = await location_id(conn, from_code, field="from_location_code")
            destination = await location_id(conn, to_code, field="to_location_code")
            await cur.execute(
                f"SELECT {_TRANSFER} FROM stock_transfers t "
                "WHERE t.item_id = %s AND t.idempotency_key = %s",
                (item_id, key),
            )
            previous = await cur.fetchone()
            if previous is not None:
                same = (previous["from_id"], previous["to_id"], previous["quantity"]) == (
                    source,
                    destination,
                    quantity,
                )
                if not same or previous["reason"] != reason:
                    raise IdempotencyKeyReused(key)
                return Transferred(_transfer(previous), replayed=True)
            available = (await available_at(conn, item_id)).get(source, 0)
            if available < quantity:
                raise InsufficientStockAt(item_id, from_code, available, quantity)
            await cur.execute(
                "INSERT INTO stock_transfers (item_id, from_location_id, to_location_id, "
                "quantity, reason, idempotency_key, actor) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "RETURNING id::text",
                (item_id, source, destination, quantity, reason, key, actor.current().subject),
            )
            created = await cur.fetchone()
            assert created is not None
            reference = f"transfer:{created['id']}"
            async with stock.one_change(conn, item_id):  # net zero for the item
                await stock.take(
                    conn,
                    item_id,
                    MovementKind.TRANSFERRED_OUT,
                    quantity,
                    location_id=source,
                    reference=reference,
                    reason=reason,
                )
                await stock.add(
                    conn,
                    item_id,
                    MovementKind.TRANSFERRED_IN,
                    quantity,
                    location_id=destination,
                    reference=reference,
                    reason=reason,
                )
            await cur.execute(
                f"SELECT {_TRANSFER} FROM stock_transfers t WHERE t.id = %s", (created["id"],)
            )
            row = await cur.fetchone()
            assert row is not None
            done = _transfer(row)
            payload = {
                "item_id": item_id,
                "transfer_id": done.id,
                "from_location_code": from_code,
                "to_location_code": to_code,
                "quantity": quantity,
                "reason": reason,
            }
            # The outbox (docs/events.md) and the audit trail, in the change's transaction.
            await events.append(
                conn,
                events.EventType.STOCK_TRANSFERRED,
                "item",
                item_id,
                payload,
                actor=actor.current().subject,
            )
            await auditlog.record(
                conn,
                auditlog.TRANSFER_STOCK,
                target_kind=auditlog.ITEM,
                target_id=item_id,
                content=payload | {"idempotency_key": key},
            )
        return Transferred(done, replayed=False)


_TRANSFER = (
    "t.id::text, t.item_id::text, t.from_location_id::text AS from_id, "
    "t.to_location_id::text AS to_id, "
    "(SELECT code FROM locations WHERE id = t.from_location_id) AS from_code, "
    "(SELECT code FROM locations WHERE id = t.to_location_id) AS to_code, "
    "t.quantity, t.reason, t.created_at"
)


def _transfer(row: dict[str, Any]) -> Transfer:
    return Transfer(
        id=row["id"],
        item_id=row["item_id"],
        from_code=row["from_code"],
        to_code=row["to_code"],
        quantity=int(row["quantity"]),
        reason=row["reason"],
        created_at=row["created_at"],
    )
