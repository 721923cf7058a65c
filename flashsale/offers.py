"""What a storefront shows: campaigns on sale now and upcoming, with their item and about
how many units are left. Reads only: PostgreSQL for the campaigns and items, the Redis gate
for the units left where the campaign is loaded (it sees the holds in flight)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from common import paging, validation
from common.errors import InvalidArgument, NotFound
from flashsale import pricing
from flashsale.gate import CampaignGate
from inventory.items import ItemKind


class OfferWindow(StrEnum):
    ON_SALE = "ON_SALE"  # starts_at <= now < ends_at
    UPCOMING = "UPCOMING"  # now < starts_at
    ENDED = "ENDED"  # ends_at <= now


@dataclass(frozen=True)
class Offer:
    campaign_id: str
    name: str
    window: OfferWindow
    starts_at: datetime
    ends_at: datetime
    points_price: int
    cash_price_cents: int
    per_member_limit: int
    approximate_units_remaining: int
    item_id: str
    item_sku: str
    item_name: str
    item_kind: ItemKind
    # Price rules (flashsale/pricing.py): all of the campaign's, and the price every member
    # pays now (an all-tier rule in force, else points_price; a tier rule may pay less).
    price_rules: tuple[pricing.PriceRule, ...] = ()
    points_price_now: int = 0


@dataclass(frozen=True)
class OfferPage:
    offers: list[Offer]
    next_page_token: str  # "" on the last page


_SELECT = (
    "SELECT c.id::text AS campaign_id, c.name, c.starts_at, c.ends_at, c.points_price, "
    "c.cash_price_cents, c.per_member_limit, c.stock_shards, "
    "c.units_allotted - c.units_committed - c.units_held AS pg_remaining, "
    "i.id::text AS item_id, i.sku AS item_sku, i.name AS item_name, i.kind AS item_kind, "
    "now() AS now, " + pricing.RULES_COLUMN + " FROM campaigns c JOIN items i ON i.id = c.item_id"
)


class Offers:
    def __init__(self, pool: AsyncConnectionPool, gate: CampaignGate) -> None:
        self._pool = pool
        self._gate = gate

    async def list_page(
        self,
        *,
        windows: frozenset[OfferWindow],
        item_kind: ItemKind | None,
        page_size: int,
        page_token: str,
    ) -> OfferPage:
        """Soonest start first (then by id). `windows` is ON_SALE, UPCOMING or both."""
        if not windows or OfferWindow.ENDED in windows:
            raise InvalidArgument("window", "must be ON_SALE, UPCOMING or unspecified (both)")
        size = paging.page_size(page_size)
        after = paging.decode(page_token)
        # A lottery's prize is won by a draw, never offered (its price is 0).
        clauses: list[str] = ["c.ends_at > now()", "NOT c.lottery_prize"]
        params: list[Any] = []
        if windows == {OfferWindow.ON_SALE}:
            clauses.append("c.starts_at <= now()")
        elif windows == {OfferWindow.UPCOMING}:
            clauses.append("c.starts_at > now()")
        if item_kind is not None:
            clauses.append("i.kind = %s")
            params.append(item_kind.value)
        if after is not None:
            clauses.append("(c.starts_at, c.id) > (%s, %s::uuid)")
            params += [after[0], validation.uuid_id("page_token", after[1])]
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"{_SELECT} WHERE {' AND '.join(clauses)} ORDER BY c.starts_at, c.id LIMIT %s",
                (*params, size + 1),
            )
            rows = await cur.fetchall()
        offers = await self._offers(rows[:size])
        token = ""
        if len(rows) > size:
            token = paging.encode(offers[-1].starts_at, offers[-1].campaign_id)
        return OfferPage(offers, token)

    async def get(self, campaign_id: str) -> Offer:
        campaign_id = validation.uuid_id("campaign_id", campaign_id)
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"{_SELECT} WHERE c.id = %s AND NOT c.lottery_prize", (campaign_id,)
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound("campaign", campaign_id)
        return (await self._offers([row]))[0]

    async def _offers(self, rows: list[dict[str, Any]]) -> list[Offer]:
        """Rows to offers, the units left read from the gate in one round trip."""
        in_gate = await self._gate.shards.remaining_many(
            [(r["campaign_id"], r["stock_shards"]) for r in rows]
        )
        offers = []
        for row, remaining in zip(rows, in_gate, strict=True):
            rules = pricing.rules_from_rows(row["price_rules"])
            now = pricing.price_now(
                rules,
                list_price=int(row["points_price"]),
                tier=None,
                now=row["now"],
                campaign_ends_at=row["ends_at"],
            )
            offers.append(self._offer(row, remaining, rules, now.unit))
        return offers

    def _offer(
        self,
        row: dict[str, Any],
        remaining: int | None,
        rules: tuple[pricing.PriceRule, ...],
        points_now: int,
    ) -> Offer:
        return Offer(
            campaign_id=row["campaign_id"],
            name=row["name"],
            window=_window(row),
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            points_price=int(row["points_price"]),
            cash_price_cents=int(row["cash_price_cents"]),
            per_member_limit=int(row["per_member_limit"]),
            approximate_units_remaining=(
                max(0, int(row["pg_remaining"])) if remaining is None else remaining
            ),
            item_id=row["item_id"],
            item_sku=row["item_sku"],
            item_name=row["item_name"],
            item_kind=ItemKind(str(row["item_kind"])),
            price_rules=rules,
            points_price_now=points_now,
        )


def _window(row: dict[str, Any]) -> OfferWindow:
    if row["ends_at"] <= row["now"]:
        return OfferWindow.ENDED
    if row["starts_at"] > row["now"]:
        return OfferWindow.UPCOMING
    return OfferWindow.ON_SALE
