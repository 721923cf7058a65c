"""An operator changing a campaign after its creation: UpdateCampaign and EndCampaign.

Both are operator changes: one PostgreSQL transaction locks the campaign (then its item:
campaigns before items, like every writer that takes both), checks, writes the campaign,
the item's stock and the audit event together. Then the gate follows (load.lua applies the
new terms atomically on the campaign's slot, because `meta_version` went up).

Why no oversell can come of it: PostgreSQL is the truth. The cut is checked against the
units committed + held under the campaign's row lock, and every later commit checks its
units against the new allotment under the same lock (commit_redemptions). Until the gate
has the new terms, Redis may admit holds for units that are gone: PostgreSQL refuses them
(SOLD_OUT) and the hold is given back. A stale gate costs refusals, never a unit.

Idempotent by nature: the values are absolute, so an update sent twice changes nothing the
second time, and a call that changes nothing writes nothing (no audit event either).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import redis.exceptions
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

import auditlog
from common import validation
from common.errors import (
    AllotmentBelowTaken,
    CampaignEnded,
    InsufficientStock,
    InvalidArgument,
    LimitBelowTaken,
    LotteryPrizeCampaign,
    NotFound,
)
from flashsale import bundles, outbox, points_back, pricing
from flashsale.campaigns import MAX_PRICE, MAX_UNITS, Campaign, Campaigns
from flashsale.settle import Settler
from inventory import codes, stock
from inventory.items import CodeSource

log = logging.getLogger(__name__)

# An upcoming campaign ended now keeps a window (ends_at > starts_at is a CHECK): it is
# moved to end now and to have started this much before.
_SHORTEST_WINDOW = timedelta(milliseconds=1)


@dataclass(frozen=True)
class CampaignUpdate:
    """The fields an UpdateCampaign names (its update_mask); None: left as it is."""

    name: str | None = None
    units_allotted: int | None = None
    points_price: int | None = None
    cash_price_cents: int | None = None
    per_member_limit: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    # Replaces the campaign's price rules (an empty tuple removes them all).
    price_rules: tuple[pricing.PriceRule, ...] | None = None
    # Applies to redemptions admitted after the change (flashsale/points_back.py).
    points_back_percent: int | None = None

    def named(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }


UPDATABLE = tuple(f.name for f in fields(CampaignUpdate))
# The ones that are columns of the campaign's row (price rules are rows of their own).
_COLUMNS = tuple(name for name in UPDATABLE if name != "price_rules")

_LOCK = (
    "SELECT id::text, item_id::text, name, units_allotted, units_committed, units_held, "
    "points_price, cash_price_cents, per_member_limit, starts_at, ends_at, points_back_percent, "
    "lottery_prize, now() AS now "
    "FROM campaigns WHERE id = %s FOR UPDATE"
)


class CampaignChanges:
    def __init__(self, pool: AsyncConnectionPool, campaigns: Campaigns, settler: Settler) -> None:
        self._pool = pool
        self._campaigns = campaigns
        self._settler = settler

    async def update(self, campaign_id: str, update: CampaignUpdate) -> Campaign:
        campaign_id = validation.uuid_id("campaign_id", campaign_id)
        asked = update.named()
        if not asked:
            raise InvalidArgument("update_mask", "names no field to change")
        if update.name is not None:
            asked["name"] = validation.text(
                "name", update.name, max_length=validation.MAX_NAME_LENGTH, required=True
            )
        if update.units_allotted is not None:
            validation.int_range(
                "units_allotted", update.units_allotted, minimum=1, maximum=MAX_UNITS
            )
        for price in ("points_price", "cash_price_cents"):
            if price in asked:
                validation.int_range(price, asked[price], minimum=0, maximum=MAX_PRICE)
        if update.per_member_limit is not None:
            validation.int_range(
                "per_member_limit", update.per_member_limit, minimum=1, maximum=MAX_UNITS
            )
        if update.points_back_percent is not None:
            points_back.check_percent(update.points_back_percent)
        changed = False
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_LOCK, (campaign_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound("campaign", campaign_id)
            if row["lottery_prize"]:  # its units and window are its lottery's prize stock
                raise LotteryPrizeCampaign(campaign_id)
            if row["ends_at"] <= row["now"]:
                raise CampaignEnded(campaign_id, row["ends_at"].isoformat())
            new: dict[str, Any] = {name: asked.get(name, row[name]) for name in _COLUMNS}
            if new["points_price"] == 0 and new["cash_price_cents"] == 0:
                field = "points_price" if "points_price" in asked else "cash_price_cents"
                raise InvalidArgument(field, "points_price and cash_price_cents are both 0")
            if new["ends_at"] <= new["starts_at"]:
                field = "ends_at" if "ends_at" in asked else "starts_at"
                raise InvalidArgument(field, "ends_at must be after starts_at")
            if new["ends_at"] <= row["now"]:
                # Ending a sale gives its unsold units back: that is EndCampaign's work.
                raise InvalidArgument("ends_at", "is in the past: EndCampaign ends a sale")
            # The rules must still fit the campaign's window and price, whichever changed.
            rules_before = await pricing.current_rules(cur, campaign_id)
            rules = asked.pop("price_rules", rules_before)
            pricing.check_rules(
                rules,
                campaign_starts_at=new["starts_at"],
                campaign_ends_at=new["ends_at"],
                cash_price_cents=new["cash_price_cents"],
                tiers=self._campaigns.tiers,
            )
            previous = {name: row[name] for name in asked if new[name] != row[name]}
            now_changed = {name: new[name] for name in previous}
            if not pricing.same_terms(rules, rules_before):
                previous["price_rules"] = pricing.as_audit(rules_before)
                now_changed["price_rules"] = pricing.as_audit(rules)
                await pricing.store_rules(cur, campaign_id, rules)
            if previous:
                changed = True
                await self._apply(cur, row, new)
                if new["units_allotted"] != row["units_allotted"]:
                    available = row["units_allotted"] - row["units_committed"] - row["units_held"]
                    await outbox.allotment_changed(conn, campaign_id, available_before=available)
                await auditlog.record(
                    conn,
                    auditlog.UPDATE_CAMPAIGN,
                    target_kind=auditlog.CAMPAIGN,
                    target_id=campaign_id,
                    content={
                        "update_mask": sorted(update.named()),
                        "changed": now_changed,
                        "previous": previous,
                    },
                )
        if changed:
            await self._follow(campaign_id)
        return await self._campaigns.get(campaign_id)

    async def end(self, campaign_id: str) -> Campaign:
        """Ends the sale now and gives the units not sold back to the item."""
        campaign_id = validation.uuid_id("campaign_id", campaign_id)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_LOCK, (campaign_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound("campaign", campaign_id)
            taken = row["units_committed"] + row["units_held"]
            unsold = row["units_allotted"] - taken
            already_over = row["ends_at"] <= row["now"]
            if row["lottery_prize"] and not already_over:
                # Draws may still win these units; once the lottery is over, the sweeper (or
                # an operator) gives the prizes not won back to the item, as for any sale.
                raise LotteryPrizeCampaign(campaign_id)
            if already_over and unsold == 0:
                return await self._campaigns.get(campaign_id)  # nothing to do: no event
            ends_at = row["now"] if not already_over else row["ends_at"]
            starts_at = min(row["starts_at"], ends_at - _SHORTEST_WINDOW)
            if unsold:
                await stock.release(conn, campaign_id, unsold, reason="campaign ended")
            await cur.execute(
                "UPDATE campaigns SET units_allotted = %s, starts_at = %s, ends_at = %s, "
                "meta_version = meta_version + 1 WHERE id = %s",
                (taken, starts_at, ends_at, campaign_id),
            )
            await auditlog.record(
                conn,
                auditlog.END_CAMPAIGN,
                target_kind=auditlog.CAMPAIGN,
                target_id=campaign_id,
                content={
                    "ends_at": ends_at,
                    "units_returned": unsold,
                    "units_allotted": taken,
                    "previous": {
                        "ends_at": row["ends_at"],
                        "units_allotted": row["units_allotted"],
                    },
                },
            )
        await self._follow(campaign_id)
        return await self._campaigns.get(campaign_id)

    async def release_ended(self, *, grace: timedelta, within: timedelta, limit: int = 50) -> int:
        """Campaigns whose window closed between `within` and `grace` ago that still hold
        units neither sold nor held (a sale that ran out its time; a payment that expired
        after it): those units back to the item, as EndCampaign gives them (its audit entry,
        actor SYSTEM). `grace` covers the commit fence: no hold can commit any more. The
        leader's sweep runs it; a campaign that ended longer ago is EndCampaign's (a cancel
        long after the end puts a unit back in its allotment: docs/inventory.md)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id::text FROM campaigns WHERE ends_at < now() - %s "
                "AND ends_at >= now() - %s AND units_allotted > units_committed + units_held "
                "ORDER BY ends_at LIMIT %s",
                (grace, within, limit),
            )
            ended = [row[0] for row in await cur.fetchall()]
        for campaign_id in ended:
            await self.end(campaign_id)
        return len(ended)

    async def _apply(self, cur: Any, row: dict[str, Any], new: dict[str, Any]) -> None:
        """The writes of an update, under the campaign's lock: stock first, then the row."""
        delta = new["units_allotted"] - row["units_allotted"]
        taken = row["units_committed"] + row["units_held"]
        if new["units_allotted"] < taken:
            raise AllotmentBelowTaken(row["id"], taken, new["units_allotted"])
        parts = await bundles.parts_of(cur.connection, row["id"]) if delta else ()
        if parts:  # a bundle: every part's stock moves (flashsale/bundles.py)
            await bundles.change_allotment(cur.connection, row["id"], parts, delta)
        elif delta or new["cash_price_cents"] != row["cash_price_cents"]:
            await cur.execute(
                "SELECT stock_on_hand, code_source FROM items WHERE id = %s FOR UPDATE",
                (row["item_id"],),
            )
            item = await cur.fetchone()
            assert item is not None  # campaigns.item_id is a foreign key
            if item["code_source"] == CodeSource.POOL.value:  # as Campaigns.create checks
                if new["cash_price_cents"]:
                    raise InvalidArgument("cash_price_cents", "must be 0 for a code-pool item")
                if delta > 0:
                    await codes.check_promise(
                        cur.connection,
                        row["item_id"],
                        field="units_allotted",
                        units=new["units_allotted"] - taken,
                        other_than_campaign=row["id"],
                    )
            if delta > item["stock_on_hand"]:
                raise InsufficientStock(row["item_id"], item["stock_on_hand"], delta)
            if delta > 0:
                await stock.allot(cur.connection, row["id"], row["item_id"], delta)
            elif delta < 0:
                await stock.release(
                    cur.connection, row["id"], -delta, reason="campaign allotment lowered"
                )
        await cur.execute(
            "UPDATE campaigns SET name = %s, units_allotted = %s, points_price = %s, "
            "cash_price_cents = %s, per_member_limit = %s, starts_at = %s, ends_at = %s, "
            "points_back_percent = %s, meta_version = meta_version + 1 WHERE id = %s",
            (
                new["name"],
                new["units_allotted"],
                new["points_price"],
                new["cash_price_cents"],
                new["per_member_limit"],
                new["starts_at"],
                new["ends_at"],
                new["points_back_percent"],
                row["id"],
            ),
        )
        if new["per_member_limit"] != row["per_member_limit"]:
            # The copy the CHECK holds (campaign_members_limit). campaign_members is written
            # only under its campaign's lock, which this transaction has.
            await cur.execute(
                "SELECT coalesce(max(units_taken), 0) AS most FROM campaign_members "
                "WHERE campaign_id = %s",
                (row["id"],),
            )
            most = (await cur.fetchone() or {}).get("most", 0)
            if new["per_member_limit"] < most:
                raise LimitBelowTaken(row["id"], most, new["per_member_limit"])
            await cur.execute(
                "UPDATE campaign_members SET unit_limit = %s WHERE campaign_id = %s",
                (new["per_member_limit"], row["id"]),
            )

    async def _follow(self, campaign_id: str) -> None:
        """After the commit: this process's cached terms dropped, the gate given the new
        ones. If Redis is away the sweeper reloads the campaign later (until then the gate
        is behind, which PostgreSQL's guards make safe)."""
        self._campaigns.forget(campaign_id)
        try:
            await self._campaigns.load_into_gate(campaign_id)
        except redis.exceptions.RedisError as e:
            log.warning(
                "campaign %s: change not mirrored to Redis (%s)", campaign_id, type(e).__name__
            )
            self._settler.defer_campaign_mirror(campaign_id)
