"""QuotePrice: the price a member would pay for a campaign's units now, and why, holding
nothing (flashsale/pricing.py decides it, as the redeem path does)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from common import validation
from common.errors import CampaignNotActive, InvalidArgument
from flashsale.campaigns import Campaigns
from flashsale.model import MAX_QUANTITY
from flashsale.pricing import Price, Pricer


@dataclass(frozen=True)
class Quote:
    quantity: int
    price: Price
    cash_total_cents: int


class Quotes:
    def __init__(self, campaigns: Campaigns, pricer: Pricer) -> None:
        self._campaigns = campaigns
        self._pricer = pricer

    async def quote(self, *, member_id: str, campaign_id: str, quantity: int) -> Quote:
        member_id = validation.uuid_id("member_id", member_id)
        campaign_id = validation.uuid_id("campaign_id", campaign_id)
        validation.int_range("quantity", quantity, minimum=1, maximum=MAX_QUANTITY)
        meta = await self._campaigns.meta(campaign_id)
        if meta.lottery_prize:  # as Redeem answers: won by a draw, never sold at a price
            raise InvalidArgument("campaign_id", "is a lottery's prize: won by Draw, not redeemed")
        now = datetime.now(UTC)
        if not meta.starts_at <= now < meta.ends_at:
            raise CampaignNotActive(meta.id, meta.starts_at.isoformat(), meta.ends_at.isoformat())
        # The member's tier is read even with no tier rule in force: an unknown member is
        # NOT_FOUND here as it would be on Redeem.
        price = await self._pricer.price(
            meta.price_rules,
            list_price=meta.points_price,
            member_id=member_id,
            now=now,
            campaign_ends_at=meta.ends_at,
            always_read_tier=True,
        )
        return Quote(quantity, price, meta.cash_price_cents * quantity)
