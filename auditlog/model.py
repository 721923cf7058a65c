"""The audit trail's values: one event per operator change, the actions there are, and a
page of events. Plain frozen dataclasses, no I/O: the server converts them to protobuf."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# <service>.<rpc in snake case>: the operator changes that write an event. A new one is
# added here (ListAuditEvents refuses to filter by an action it does not know).
CREATE_ITEM = "catalog.create_item"
ADJUST_STOCK = "catalog.adjust_stock"
CREATE_PRODUCT = "catalog.create_product"
UPDATE_ITEM = "catalog.update_item"
RETIRE_ITEM = "catalog.retire_item"
IMPORT_CODES = "codes.import_codes"
CREATE_CAMPAIGN = "campaign.create_campaign"
UPDATE_CAMPAIGN = "campaign.update_campaign"
END_CAMPAIGN = "campaign.end_campaign"
ADJUST_POINTS = "member.adjust_points"
FREEZE_MEMBER = "member.freeze_member"
UNFREEZE_MEMBER = "member.unfreeze_member"
SET_MANUAL_TIER = "member.set_manual_tier"
EVALUATE_TIER = "member.evaluate_tier"
# The warehouse's and the operator's steps of a redemption (flashsale/fulfilment.py); a
# member's RequestReturn is not an operator change and writes none.
START_PACKING = "fulfilment.start_packing"
MARK_SHIPPED = "fulfilment.mark_shipped"
MARK_DELIVERED = "fulfilment.mark_delivered"
ACCEPT_RETURN = "fulfilment.accept_return"
REJECT_RETURN = "fulfilment.reject_return"
CREATE_LOCATION = "location.create_location"
TRANSFER_STOCK = "location.transfer_stock"
# Low-stock thresholds and physical counts (inventory/low_stock.py, inventory/counts.py).
SET_LOW_STOCK_THRESHOLD = "stock_counts.set_low_stock_threshold"
SUBMIT_STOCK_COUNT = "stock_counts.submit_stock_count"
CREATE_LOTTERY = "lottery.create_lottery"
# Member cards (cards/cards.py). ReportCardLost is recorded whoever reports it (a member
# through the storefront or an operator): it stops a card, and the subject says who.
CREATE_CARD_TYPE = "card.create_card_type"
ISSUE_CARDS = "card.issue_cards"
OPEN_CARD = "card.open_card"
REPORT_CARD_LOST = "card.report_card_lost"
UNLOCK_CARD = "card.unlock_card"
REPLACE_CARD = "card.replace_card"
CREATE_EARN_RULE = "earn_rules.create_earn_rule"
END_EARN_RULE = "earn_rules.end_earn_rule"
ACTIONS = (
    CREATE_ITEM,
    ADJUST_STOCK,
    CREATE_PRODUCT,
    UPDATE_ITEM,
    RETIRE_ITEM,
    IMPORT_CODES,
    CREATE_CAMPAIGN,
    UPDATE_CAMPAIGN,
    END_CAMPAIGN,
    ADJUST_POINTS,
    FREEZE_MEMBER,
    UNFREEZE_MEMBER,
    SET_MANUAL_TIER,
    EVALUATE_TIER,
    START_PACKING,
    MARK_SHIPPED,
    MARK_DELIVERED,
    ACCEPT_RETURN,
    REJECT_RETURN,
    CREATE_LOCATION,
    TRANSFER_STOCK,
    SET_LOW_STOCK_THRESHOLD,
    SUBMIT_STOCK_COUNT,
    CREATE_LOTTERY,
    CREATE_CARD_TYPE,
    ISSUE_CARDS,
    OPEN_CARD,
    REPORT_CARD_LOST,
    UNLOCK_CARD,
    REPLACE_CARD,
    CREATE_EARN_RULE,
    END_EARN_RULE,
)

# What an event's target_id names.
ITEM = "item"
PRODUCT = "product"
CAMPAIGN = "campaign"
MEMBER = "member"
REDEMPTION = "redemption"
LOCATION = "location"
LOTTERY = "lottery"
CARD_TYPE = "card_type"
CARD = "card"
EARN_RULE = "earn_rule"
TARGET_KINDS = (
    ITEM,
    PRODUCT,
    CAMPAIGN,
    MEMBER,
    REDEMPTION,
    LOCATION,
    LOTTERY,
    CARD_TYPE,
    CARD,
    EARN_RULE,
)


@dataclass(frozen=True)
class AuditEvent:
    id: str
    occurred_at: datetime  # PostgreSQL's clock at the start of the change's transaction
    subject: str  # the credential's subject: who made the change
    request_id: str
    action: str  # one of ACTIONS
    target_kind: str  # one of TARGET_KINDS
    target_id: str
    content: dict[str, Any]  # the request as the use case accepted it, secrets masked


@dataclass(frozen=True)
class AuditQuery:
    """Filters of a listing, combined with AND; empty / None: no filter."""

    subject: str = ""
    action: str = ""
    target_id: str = ""
    start: datetime | None = None  # occurred_at >= start
    end: datetime | None = None  # occurred_at < end


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    next_page_token: str  # "" on the last page
