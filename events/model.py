"""The event types the outbox carries. The payload of each is documented in
docs/events.md; a type's name never changes once published (consumers filter on it)."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    REDEMPTION_COMMITTED = "redemption.committed"
    REDEMPTION_CANCELLED = "redemption.cancelled"
    REDEMPTION_EXPIRED = "redemption.expired"
    REDEMPTION_PACKING = "redemption.packing"
    REDEMPTION_SHIPPED = "redemption.shipped"
    REDEMPTION_DELIVERED = "redemption.delivered"
    REDEMPTION_RETURN_REQUESTED = "redemption.return_requested"
    REDEMPTION_RETURNED = "redemption.returned"
    REDEMPTION_RETURN_REJECTED = "redemption.return_rejected"
    POINTS_EARNED = "points.earned"
    POINTS_SPENT = "points.spent"
    POINTS_EXPIRED = "points.expired"
    POINTS_ADJUSTED = "points.adjusted"
    POINTS_TRANSFERRED = "points.transferred"
    POINTS_REFUNDED = "points.refunded"  # a cancelled or expired redemption's points back
    POINTS_REVERSED = "points.reversed"  # a purchase reversed, a debt repaid
    STOCK_ADJUSTED = "stock.adjusted"
    ITEM_UPDATED = "item.updated"  # UpdateItem: descriptive fields
    ITEM_RETIRED = "item.retired"  # RetireItem: no new campaigns
    STOCK_TRANSFERRED = "stock.transferred"
    STOCK_LOW = "stock.low"  # written by stock_low_check (inventory/sql/low_stock.sql)
    STOCK_REPLENISHED = "stock.replenished"
    STOCK_COUNTED = "stock.counted"
    CAMPAIGN_SOLD_OUT = "campaign.sold_out"
    CAMPAIGN_REOPENED = "campaign.reopened"
    CODE_CONSUMED = "code.consumed"
    CODE_POOL_LOW = "code.pool_low"
    LOTTERY_DRAWN = "lottery.drawn"  # a draw committed (lottery/sql/draws.sql)
    POINTS_PENDING = "points.pending"  # pending purchase points credited or reversed
