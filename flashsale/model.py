"""What a redemption is: its request, its states and the answers Redeem gives. Plain values,
no I/O; every other flashsale module speaks in these."""

from __future__ import annotations

import base64
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum

from common import validation
from common.errors import InvalidArgument

MAX_QUANTITY = 1000
_ADDRESS_MAX = 200


class RedemptionStatus(StrEnum):
    PENDING_PAYMENT = "PENDING_PAYMENT"
    COMMITTED = "COMMITTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    # Physical items after COMMITTED (flashsale/fulfilment.py, docs/fulfilment.md).
    PACKING = "PACKING"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    RETURN_REQUESTED = "RETURN_REQUESTED"
    RETURNED = "RETURNED"
    RETURN_REJECTED = "RETURN_REJECTED"


# The states whose units are sold: the campaign's units_committed and the member's
# units_taken count them. A return does not unsell (restocked units go to the item's stock,
# not back to a campaign that may have ended), so RETURNED stays sold.
SOLD = frozenset(
    {
        RedemptionStatus.COMMITTED,
        RedemptionStatus.PACKING,
        RedemptionStatus.SHIPPED,
        RedemptionStatus.DELIVERED,
        RedemptionStatus.RETURN_REQUESTED,
        RedemptionStatus.RETURNED,
        RedemptionStatus.RETURN_REJECTED,
    }
)
# The same, for SQL: `status IN SOLD_SQL`.
SOLD_SQL = "(" + ", ".join(f"'{s.value}'" for s in sorted(SOLD)) + ")"


class ReturnDisposition(StrEnum):
    RESTOCK = "RESTOCK"  # the units go back to the item's stock on hand
    WRITE_OFF = "WRITE_OFF"  # the units leave the stock for good


@dataclass(frozen=True)
class Address:
    recipient: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country_code: str = ""
    phone: str = ""

    def validated(self) -> Address:
        values: dict[str, str] = {}
        for name, value in asdict(self).items():
            required = name in ("recipient", "line1", "city", "postal_code", "country_code")
            values[name] = validation.text(
                f"shipping_address.{name}", value, max_length=_ADDRESS_MAX, required=required
            )
        code = values["country_code"]
        if len(code) != 2 or not code.isalpha() or not code.isascii():
            raise InvalidArgument("shipping_address.country_code", "must be 2 letters (ISO 3166-1)")
        values["country_code"] = code.upper()
        return Address(**values)


@dataclass(frozen=True)
class RedeemRequest:
    member_id: str
    campaign_id: str
    quantity: int
    idempotency_key: str
    shipping_address: Address | None = None


@dataclass(frozen=True)
class HistoryEntry:
    status: RedemptionStatus
    at: datetime
    actor: str
    note: str


@dataclass(frozen=True)
class Shipment:
    carrier: str
    tracking_number: str
    shipped_at: datetime


@dataclass(frozen=True)
class ReturnInfo:
    reason: str
    requested_at: datetime
    resolved_at: datetime | None = None
    disposition: ReturnDisposition | None = None
    cash_refund_cents: int = 0
    rejection_reason: str = ""


@dataclass(frozen=True)
class BundlePart:
    """One item of a bundle campaign (flashsale/bundles.py): `quantity` units of it in each
    bundle sold."""

    item_id: str
    quantity: int


@dataclass(frozen=True)
class Redemption:
    id: str
    member_id: str
    campaign_id: str
    item_id: str
    quantity: int
    points_total: int
    cash_total_cents: int
    status: RedemptionStatus
    redemption_code: str | None
    shipping_address: Address | None
    idempotency_key: str
    created_at: datetime
    updated_at: datetime
    payment_due_at: datetime | None
    payment_reference: str | None
    shipment: Shipment | None = None
    delivered_at: datetime | None = None
    return_info: ReturnInfo | None = None
    replacement_of: str | None = None
    replaced_by: str | None = None
    # Points given back (flashsale/points_back.py): posted, or for one waiting for payment
    # to be posted at confirmation; kept as decided after a cancel or return reverses them.
    points_back: int = 0
    # Oldest first; filled where it is read (GetRedemption, a change to one redemption).
    history: tuple[HistoryEntry, ...] = ()
    # The price it was admitted at (flashsale/pricing.py): the list price of its units (None:
    # the points paid, as before price rules) and the rule that discounted it, if any.
    list_points_total: int | None = None
    price_rule_id: str | None = None
    # A bundle's parts, per one bundle (empty for a campaign of one item).
    bundle_parts: tuple[BundlePart, ...] = ()


@dataclass(frozen=True)
class Redeemed:
    redemption: Redemption
    replayed: bool


@dataclass(frozen=True)
class RedemptionPage:
    redemptions: list[Redemption]
    next_page_token: str


@dataclass(frozen=True)
class Timing:
    hold_ttl_s: float
    commit_fence_s: float
    payment_window_s: float


def new_redemption_code() -> str:
    """80 random bits in Crockford-free base32: 16 characters, dashed in fours."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode()
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))
