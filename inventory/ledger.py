"""The stock ledger's reads (docs/inventory.md): an item's levels per location and its
movements, paged. The writes are inventory/stock.py's."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from common import paging, validation
from common.errors import InvalidArgument, NotFound
from inventory import locations
from inventory.stock import MovementKind


@dataclass(frozen=True)
class LocationLevel:
    location_id: str
    location_code: str
    on_hand: int
    allotted: int

    @property
    def available(self) -> int:
        return self.on_hand - self.allotted


@dataclass(frozen=True)
class StockLevels:
    item_id: str
    sku: str
    held: int
    committed: int
    locations: Sequence[LocationLevel]

    @property
    def on_hand(self) -> int:
        return sum(level.on_hand for level in self.locations)

    @property
    def allotted(self) -> int:
        return sum(level.allotted for level in self.locations)

    @property
    def available(self) -> int:
        return self.on_hand - self.allotted


@dataclass(frozen=True)
class Movement:
    id: int
    item_id: str
    location_id: str
    location_code: str
    kind: MovementKind
    on_hand_delta: int
    allotted_delta: int
    campaign_id: str | None
    redemption_id: str | None
    reference: str | None
    actor: str | None
    reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class MovementPage:
    movements: Sequence[Movement]
    next_page_token: str


@dataclass(frozen=True)
class MovementFilter:
    location_code: str = ""
    kinds: Sequence[MovementKind] = ()
    campaign_id: str = ""
    redemption_id: str = ""


_MOVEMENT_COLUMNS = (
    "m.id, m.item_id::text, m.location_id::text, l.code AS location_code, m.kind, "
    "m.on_hand_delta, m.allotted_delta, m.campaign_id::text, m.redemption_id::text, "
    "m.reference, m.actor, m.reason, m.created_at"
)


class StockLedger:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def levels(self, item_id: str) -> StockLevels:
        item_id = validation.uuid_id("item_id", item_id)
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            # held: units of redemptions waiting for payment (inside the allotment);
            # committed: units redeemed and not cancelled, by the ledger's own rows.
            await cur.execute(
                "SELECT i.sku, "
                # A bundle holds each part's quantity per bundle (campaign_parts).
                "(SELECT coalesce(sum(c.units_held * p.quantity), 0) FROM campaigns c "
                " JOIN campaign_parts p ON p.campaign_id = c.id WHERE p.item_id = i.id) AS held, "
                "(SELECT coalesce(-sum(m.on_hand_delta), 0) FROM stock_movements m "
                " WHERE m.item_id = i.id AND m.kind IN ('redeemed', 'cancelled')) AS committed "
                "FROM items i WHERE i.id = %s",
                (item_id,),
            )
            item = await cur.fetchone()
            if item is None:
                raise NotFound("item", item_id)
            await cur.execute(
                "SELECT s.location_id::text, l.code, s.on_hand, s.allotted FROM stock_levels s "
                "JOIN locations l ON l.id = s.location_id WHERE s.item_id = %s "
                "ORDER BY l.code <> 'default', l.code",
                (item_id,),
            )
            rows = await cur.fetchall()
        return StockLevels(
            item_id=item_id,
            sku=item["sku"],
            held=int(item["held"]),
            committed=int(item["committed"]),
            locations=[
                LocationLevel(r["location_id"], r["code"], int(r["on_hand"]), int(r["allotted"]))
                for r in rows
            ],
        )

    async def movements(
        self,
        item_id: str,
        where: MovementFilter = MovementFilter(),
        *,
        page_size: int = 0,
        page_token: str = "",
    ) -> MovementPage:
        item_id = validation.uuid_id("item_id", item_id)
        size = paging.page_size(page_size)
        after = _decode(page_token)
        clauses = ["m.item_id = %s", "m.id > %s"]
        params: list[Any] = [item_id, after]
        if where.location_code:
            locations.valid_code("location_code", where.location_code)
            clauses.append("l.code = %s")
            params.append(where.location_code)
        if where.kinds:
            clauses.append("m.kind = ANY (%s)")
            params.append([k.value for k in where.kinds])
        if where.campaign_id:
            clauses.append("m.campaign_id = %s")
            params.append(validation.uuid_id("campaign_id", where.campaign_id))
        if where.redemption_id:
            clauses.append("m.redemption_id = %s")
            params.append(validation.uuid_id("redemption_id", where.redemption_id))
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT 1 FROM items WHERE id = %s", (item_id,))
            if await cur.fetchone() is None:
                raise NotFound("item", item_id)
            if where.location_code:
                await cur.execute("SELECT 1 FROM locations WHERE code = %s", (where.location_code,))
                if await cur.fetchone() is None:
                    raise NotFound("location", where.location_code)
            await cur.execute(
                f"SELECT {_MOVEMENT_COLUMNS} FROM stock_movements m "
                "JOIN locations l ON l.id = m.location_id "
                f"WHERE {' AND '.join(clauses)} ORDER BY m.id LIMIT %s",
                (*params, size + 1),
            )
            rows = await cur.fetchall()
        page = [_movement(r) for r in rows[:size]]
        token = _encode(page[-1].id) if len(rows) > size else ""
        return MovementPage(page, token)


def _movement(r: dict[str, Any]) -> Movement:
    return Movement(
        id=int(r["id"]),
        item_id=r["item_id"],
        location_id=r["location_id"],
        location_code=r["location_code"],
        kind=MovementKind(r["kind"]),
        on_hand_delta=int(r["on_hand_delta"]),
        allotted_delta=int(r["allotted_delta"]),
        campaign_id=r["campaign_id"],
        redemption_id=r["redemption_id"],
        reference=r["reference"],
        actor=r["actor"],
        reason=r["reason"],
        created_at=r["created_at"],
    )


# Keyset on the movement id (the ledger's order), opaque to callers.
_TOKEN_PREFIX = "mv:"


def _encode(movement_id: int) -> str:
    raw = f"{_TOKEN_PREFIX}{movement_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str) -> int:
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if raw.startswith(_TOKEN_PREFIX):
            value = int(raw[len(_TOKEN_PREFIX) :])
            if value > 0:
                return value
    except (ValueError, UnicodeDecodeError):
        pass
    raise InvalidArgument("page_token", "is not a token this service issued")
