"""Campaigns: units allotted out of an item's stock, sold in a time window at a price.
Creating one is an operator change: it writes its audit event (auditlog) in the same
transaction. Changing or ending one is flashsale/changes.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis.exceptions
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

import auditlog
from common import create_requests, paging, validation
from common.errors import InsufficientStock, InvalidArgument, NotFound
from flashsale import bundles, loading, points_back, pricing
from flashsale.gate import CampaignGate
from flashsale.model import BundlePart
from inventory import codes, locations, stock
from inventory.catalogue import ItemState
from inventory.errors import ItemRetired
from inventory.items import CodeSource, ItemKind

MAX_UNITS = 10**7
MAX_PRICE = 10**12
# How long a process trusts its cached campaign terms (price, kind, limit, window) on the
# redeem path. An operator's change (flashsale/changes.py) drops the entry in the process
# that made it; other processes see it within this time. Only the price is taken from the
# cache: the allotment, the limit and the window are checked by Redis and PostgreSQL.
META_TTL_S = 5.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CampaignMeta:
    """A campaign's terms. They change only by an operator's UpdateCampaign or EndCampaign,
    so the redeem path caches them for META_TTL_S."""

    id: str
    item_id: str
    item_kind: ItemKind
    name: str
    units_allotted: int
    points_price: int
    cash_price_cents: int
    per_member_limit: int
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
    stock_shards: int = 1  # Redis hash slots holding the units (flashsale/shards.py)
    code_pool: bool = False  # the item's codes come from a pool (inventory/codes.py)
    price_rules: tuple[pricing.PriceRule, ...] = ()  # time-windowed prices (flashsale/pricing.py)
    points_back_percent: int = 0  # of the points paid, given back (flashsale/points_back.py)
    # A bundle's parts (flashsale/bundles.py): item_id is the first's; units are bundles.
    bundle: tuple[BundlePart, ...] = ()
    lottery_prize: bool = False  # won by LotteryService.Draw only (lottery/prizes.py)

    @property
    def needs_payment(self) -> bool:
        return self.cash_price_cents > 0


@dataclass(frozen=True)
class Campaign:
    meta: CampaignMeta
    units_committed: int
    units_held: int

    @property
    def units_remaining(self) -> int:
        return self.meta.units_allotted - self.units_committed - self.units_held


@dataclass(frozen=True)
class ActiveUnits:
    """A campaign's units as PostgreSQL has them (held: redemptions waiting for payment)."""

    campaign_id: str
    name: str
    allotted: int
    committed: int
    held: int
    stock_shards: int = 1


@dataclass(frozen=True)
class CampaignPage:
    campaigns: list[Campaign]
    next_page_token: str


_COLUMNS = (
    "c.id::text, c.item_id::text, i.kind AS item_kind, i.code_source, c.name, c.units_allotted, "
    "c.points_price, c.cash_price_cents, c.per_member_limit, c.starts_at, c.ends_at, "
    "c.created_at, c.units_committed, c.units_held, c.version, c.stock_shards, "
    "c.lottery_prize, c.points_back_percent, " + pricing.RULES_COLUMN + ", " + bundles.PARTS_COLUMN
)
MAX_STOCK_SHARDS = 64


class Campaigns:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        gate: CampaignGate,
        *,
        record_ttl_s: int,
        tiers: Sequence[str] = (),
    ) -> None:
        self._pool = pool
        self.tiers = tuple(tiers)  # the program's tier names, which price rules may name
        self._gate = gate
        self._record_ttl_s = record_ttl_s
        self._meta: dict[str, tuple[CampaignMeta, float]] = {}  # id -> (terms, read at)
        # id -> stock shards: fixed at creation, so never stale (kept with no expiry).
        self._shards: dict[str, int] = {}

    async def create(
        self,
        *,
        item_id: str,
        name: str,
        units_allotted: int,
        points_price: int,
        cash_price_cents: int,
        per_member_limit: int,
        starts_at: datetime,
        ends_at: datetime,
        stock_shards: int = 1,
        allotments: Sequence[tuple[str, int]] = (),
        price_rules: Sequence[pricing.PriceRule] = (),
        points_back_percent: int = 0,
        bundle_parts: Sequence[BundlePart] = (),
        request_id: str = "",
    ) -> Campaign:
        """`allotments`: (location code, units) to draw the units from, in the order they
        are sold; empty: from available stock, the default location first. `price_rules`:
        time-windowed prices (flashsale/pricing.py). `bundle_parts`: a bundle
        (flashsale/bundles.py), units_allotted in bundles, 0: as many as fit. `request_id`
        (AIP-155, common/create_requests.py): the same request again answers the campaign
        it made, its stock allotted once; another request under it is RequestIdReused."""
        # The request's every field as asked: the parameters (one added later is hashed too).
        asked = {k: v for k, v in locals().items() if k not in ("self", "request_id")}
        parts = bundles.validate(bundle_parts, item_id, stock_shards, allotments)
        item_id = validation.uuid_id("item_id", parts[0].item_id if parts else item_id)
        name = validation.text("name", name, max_length=validation.MAX_NAME_LENGTH, required=True)
        validation.int_range(
            "units_allotted", units_allotted, minimum=0 if parts else 1, maximum=MAX_UNITS
        )
        validation.int_range("points_price", points_price, minimum=0, maximum=MAX_PRICE)
        validation.int_range("cash_price_cents", cash_price_cents, minimum=0, maximum=MAX_PRICE)
        if points_price == 0 and cash_price_cents == 0:
            raise InvalidArgument("points_price", "points_price and cash_price_cents are both 0")
        validation.int_range("per_member_limit", per_member_limit, minimum=1, maximum=MAX_UNITS)
        if ends_at <= starts_at:
            raise InvalidArgument("ends_at", "must be after starts_at")
        validation.int_range("stock_shards", stock_shards, minimum=1, maximum=MAX_STOCK_SHARDS)
        locations.check_allotments(allotments, units_allotted)
        pricing.check_rules(
            price_rules,
            campaign_starts_at=starts_at,
            campaign_ends_at=ends_at,
            cash_price_cents=cash_price_cents,
            tiers=self.tiers,
        )
        points_back.check_percent(points_back_percent)
        request = create_requests.of(create_requests.CAMPAIGN, request_id, **asked)
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await create_requests.claim(conn, request)
                cur = conn.cursor(row_factory=dict_row)
                if parts:  # every part's item locked (in id order) and checked first
                    units_allotted = await bundles.check_items(
                        conn, parts, units_allotted, most=MAX_UNITS
                    )
                await cur.execute(
                    "SELECT stock_on_hand, code_source, state, retired_at FROM items "
                    "WHERE id = %s FOR UPDATE",
                    (item_id,),
                )
                item = await cur.fetchone()
                if item is None:
                    raise NotFound("item", item_id)
                if item["state"] == ItemState.RETIRED:  # under the lock RetireItem takes
                    raise ItemRetired(item_id, item["retired_at"].isoformat())
                if item["code_source"] == CodeSource.POOL.value:
                    # A pool's code is given in the commit; a pending payment has no commit to
                    # give it in (not supported yet). The allotment is bounded by the codes.
                    if cash_price_cents:
                        raise InvalidArgument("cash_price_cents", "must be 0 for a code-pool item")
                    await codes.check_promise(
                        conn, item_id, field="units_allotted", units=units_allotted
                    )
                # PostgreSQL's clock, the one the commit guards use: a window already over would
                # take the item's stock for a sale that can never open.
                await cur.execute("SELECT %s::timestamptz <= now() AS over", (ends_at,))
                if (await cur.fetchone() or {}).get("over"):
                    raise InvalidArgument("ends_at", "is in the past: the sale could never open")
                if item["stock_on_hand"] < units_allotted:
                    raise InsufficientStock(item_id, item["stock_on_hand"], units_allotted)
                # None: wherever there is some (stock_allot's default-first order).
                drawn: list[tuple[str | None, int]] = [] if parts else [(None, units_allotted)]
                if allotments:
                    drawn = list(await locations.resolve_allotments(conn, item_id, allotments))
                await cur.execute(
                    "INSERT INTO campaigns (item_id, name, units_allotted, points_price, "
                    "cash_price_cents, per_member_limit, starts_at, ends_at, stock_shards, "
                    "points_back_percent) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "RETURNING id::text",
                    (
                        item_id,
                        name,
                        units_allotted,
                        points_price,
                        cash_price_cents,
                        per_member_limit,
                        starts_at,
                        ends_at,
                        stock_shards,
                        points_back_percent,
                    ),
                )
                created = await cur.fetchone()
                assert created is not None
                await create_requests.record(conn, request, created["id"])
                # The units leave the item's available stock (inventory/stock.py); a campaign's
                # locations are sold from in the order allotted.
                if parts:  # each part's quantity per bundle
                    await bundles.create(conn, created["id"], parts, units_allotted)
                for location_id, units in drawn:
                    await stock.allot(conn, created["id"], item_id, units, location_id=location_id)
                await pricing.store_rules(cur, created["id"], price_rules)
                await auditlog.record(
                    conn,
                    auditlog.CREATE_CAMPAIGN,
                    target_kind=auditlog.CAMPAIGN,
                    target_id=created["id"],
                    content={
                        "item_id": item_id,
                        "name": name,
                        "units_allotted": units_allotted,
                        "points_price": points_price,
                        "cash_price_cents": cash_price_cents,
                        "per_member_limit": per_member_limit,
                        "starts_at": starts_at,
                        "ends_at": ends_at,
                        "stock_shards": stock_shards,
                    }
                    | ({"points_back_percent": points_back_percent} if points_back_percent else {})
                    | ({"bundle_parts": [vars(p) for p in parts]} if parts else {})
                    | (
                        {"allotments": [{"location_code": c, "units": u} for c, u in allotments]}
                        if allotments
                        else {}
                    )
                    | ({"price_rules": pricing.as_audit(price_rules)} if price_rules else {}),
                )
        except create_requests.Replayed as replay:
            return await self.get(replay.resource_id)
        try:
            await self.load_into_gate(created["id"])
        except redis.exceptions.RedisError as e:
            # Committed: the gate loads the campaign on its first reservation instead.
            log.warning("campaign %s: not loaded into Redis (%s)", created["id"], type(e).__name__)
        return await self.get(created["id"])

    async def meta(self, campaign_id: str) -> CampaignMeta:
        """Cached for META_TTL_S (terms change only by an operator). NotFound if none."""
        cached = self._meta.get(campaign_id)
        if cached is not None and time.monotonic() - cached[1] < META_TTL_S:
            return cached[0]
        return (await self.get(campaign_id)).meta

    async def stock_shards(self, campaign_id: str) -> int:
        """The campaign's stock shards (fixed at creation: cached with no expiry)."""
        found = self._shards.get(campaign_id)
        if found is None:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT stock_shards FROM campaigns WHERE id = %s", (campaign_id,)
                )
                row = await cur.fetchone()
            if row is None:
                raise NotFound("campaign", campaign_id)
            found = self._shards[campaign_id] = int(row[0])
        return found

    def forget(self, campaign_id: str) -> None:
        """Drops the cached terms: the next redemption reads them again."""
        self._meta.pop(campaign_id, None)

    async def get(self, campaign_id: str) -> Campaign:
        campaign_id = validation.uuid_id("campaign_id", campaign_id)
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"SELECT {_COLUMNS} FROM campaigns c JOIN items i ON i.id = c.item_id "
                "WHERE c.id = %s",
                (campaign_id,),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound("campaign", campaign_id)
        return (await self._campaigns([row]))[0]

    async def list_page(
        self, *, active_only: bool, page_size: int, page_token: str
    ) -> CampaignPage:
        size = paging.page_size(page_size, default=50)
        after = paging.decode(page_token)
        clauses, params = [], []
        if active_only:
            clauses.append("c.starts_at <= now() AND c.ends_at > now()")
        if after is not None:
            clauses.append("(c.created_at, c.id) < (%s, %s::uuid)")
            params += [after[0], after[1]]
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"SELECT {_COLUMNS} FROM campaigns c JOIN items i ON i.id = c.item_id {where} "
                "ORDER BY c.created_at DESC, c.id DESC LIMIT %s",
                (*params, size + 1),
            )
            rows = await cur.fetchall()
        campaigns = await self._campaigns(rows[:size])
        token = ""
        if len(rows) > size:
            last = campaigns[-1].meta
            token = paging.encode(last.created_at, last.id)
        return CampaignPage(campaigns, token)

    async def ids_to_watch(self, *, ended_within: timedelta) -> list[str]:
        """Campaigns that may hold Redis state: not ended, or ended recently. Their stock
        shards come in the same read (kept as stock_shards keeps them): a sweep pass over
        10^4 campaigns asks PostgreSQL once, not once each."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id::text, stock_shards FROM campaigns WHERE ends_at > now() - %s",
                (ended_within,),
            )
            rows = await cur.fetchall()
        for campaign_id, shards in rows:
            self._shards[campaign_id] = int(shards)
        return [campaign_id for campaign_id, _ in rows]

    async def active_units(self, *, ended_within: timedelta) -> list[ActiveUnits]:
        """Units of the campaigns open now or ended recently (their metrics' label set)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id::text, name, units_allotted, units_committed, units_held, "
                "stock_shards FROM campaigns WHERE starts_at <= now() AND ends_at > now() - %s",
                (ended_within,),
            )
            return [ActiveUnits(*r) for r in await cur.fetchall()]

    async def load_into_gate(self, campaign_id: str) -> bool:
        """Puts the campaign into Redis from PostgreSQL (flashsale/loading.py). Returns True
        if its state was created."""
        created, self._shards[campaign_id] = await loading.load_campaign(
            self._pool, self._gate, campaign_id, record_ttl_s=self._record_ttl_s
        )
        return created

    async def _campaigns(self, rows: list[dict[str, Any]]) -> list[Campaign]:
        """Rows to campaigns, with the units held in flight read in one Redis round trip."""
        metas = [self._cache_meta(row) for row in rows]
        taken = [
            (m.id, m.stock_shards, row["units_committed"] + row["units_held"])
            for m, row in zip(metas, rows, strict=True)
        ]
        in_flight = await self._gate.shards.in_flight_many(taken)
        return [
            Campaign(
                meta, units_committed=row["units_committed"], units_held=row["units_held"] + held
            )
            for meta, row, (held, _) in zip(metas, rows, in_flight, strict=True)
        ]

    def _cache_meta(self, row: dict[str, Any]) -> CampaignMeta:
        meta = CampaignMeta(
            id=str(row["id"]),
            item_id=str(row["item_id"]),
            item_kind=ItemKind(str(row["item_kind"])),
            name=str(row["name"]),
            units_allotted=int(row["units_allotted"]),
            points_price=int(row["points_price"]),
            cash_price_cents=int(row["cash_price_cents"]),
            per_member_limit=int(row["per_member_limit"]),
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            created_at=row["created_at"],
            stock_shards=int(row["stock_shards"]),
            code_pool=row["code_source"] == CodeSource.POOL.value,
            price_rules=pricing.rules_from_rows(row.get("price_rules")),
            points_back_percent=int(row["points_back_percent"]),
            bundle=bundles.from_json(row["bundle_parts"]),
            lottery_prize=bool(row.get("lottery_prize")),
        )
        self._meta[meta.id] = (meta, time.monotonic())
        self._shards[meta.id] = meta.stock_shards
        return meta
