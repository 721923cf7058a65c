"""The inventory's refusals (code pools: inventory/codes.py; the catalogue:
inventory/catalogue.py, inventory/changes.py; locations: inventory/locations.py), as
subclasses of common.errors.Refusal: the edge answers them FAILED_PRECONDITION with their
reason in the ErrorInfo.

Refusal
├── InsufficientStock (common.errors)
│   └── InsufficientStockAt(item_id, location_code, ...)  too few available at a location
├── NotAPoolItem(item_id)                       codes loaded into a GENERATED item
├── CodePoolTooSmall(item_id, field, ...)       a campaign would sell more than the pool has
├── CodeAlreadyConsumed(item_id, consumed_at)   a second consume, by another request
├── CodeNotIssued(item_id)                      a consume of a code still in the pool
├── CodeRevoked(item_id)                        a consume of a cancelled redemption's code
├── CodeConsumed(redemption_id)                 a cancel of a redemption whose code is used
├── ItemRetired(item_id, retired_at)            a new campaign of a retired item
├── ItemHasLiveCampaign(item_id, campaign_id)   a retire while a campaign has not ended
└── TooManyVariants(product_id, limit)          a variant past the product's MAX_VARIANTS
"""

from __future__ import annotations

from common.errors import InsufficientStock, Refusal


class InsufficientStockAt(InsufficientStock):
    """Too few units available (on hand, not allotted) at one location: the same reason as
    the item-wide refusal, with the location named."""

    def __init__(self, item_id: str, location_code: str, available: int, requested: int) -> None:
        super().__init__(item_id, available, requested)
        self.message = (
            f"item {item_id} has {available} units available at location {location_code!r}, "
            f"{requested} requested"
        )
        self.args = (self.message,)
        self.location_code = location_code

    def metadata(self) -> dict[str, str]:
        return super().metadata() | {"location_code": self.location_code}


class NotAPoolItem(Refusal):
    reason = "NOT_A_POOL_ITEM"

    def __init__(self, item_id: str) -> None:
        super().__init__(f"item {item_id} does not take its codes from a pool")
        self.item_id = item_id

    def metadata(self) -> dict[str, str]:
        return {"item_id": self.item_id, "field": "item_id"}


class CodePoolTooSmall(Refusal):
    """A campaign's unsold units would exceed the pool's codes not promised to its other
    campaigns: the Redis gate would admit redemptions PostgreSQL must refuse."""

    reason = "CODE_POOL_TOO_SMALL"

    def __init__(self, item_id: str, field: str, available: int, requested: int) -> None:
        super().__init__(
            f"item {item_id} has {available} codes not promised to other campaigns; "
            f"{field} asks for {requested}"
        )
        self.item_id, self.field = item_id, field
        self.available, self.requested = available, requested

    def metadata(self) -> dict[str, str]:
        return {
            "item_id": self.item_id,
            "field": self.field,
            "codes_available": str(self.available),
            "requested": str(self.requested),
        }


class CodeAlreadyConsumed(Refusal):
    reason = "ALREADY_CONSUMED"

    def __init__(self, item_id: str, consumed_at: str) -> None:
        super().__init__(f"this code of item {item_id} was consumed at {consumed_at}")
        self.item_id, self.consumed_at = item_id, consumed_at

    def metadata(self) -> dict[str, str]:
        return {"item_id": self.item_id, "consumed_at": self.consumed_at}


class CodeNotIssued(Refusal):
    reason = "CODE_NOT_ISSUED"

    def __init__(self, item_id: str) -> None:
        super().__init__(f"this code of item {item_id} was not given to any redemption")
        self.item_id = item_id

    def metadata(self) -> dict[str, str]:
        return {"item_id": self.item_id}


class CodeRevoked(Refusal):
    reason = "CODE_REVOKED"

    def __init__(self, item_id: str) -> None:
        super().__init__(f"this code of item {item_id} was revoked: its redemption was cancelled")
        self.item_id = item_id

    def metadata(self) -> dict[str, str]:
        return {"item_id": self.item_id}


class CodeConsumed(Refusal):
    """A redemption whose code a merchant consumed: the good was used, so it cannot be
    cancelled (nor its points refunded)."""

    reason = "CODE_CONSUMED"

    def __init__(self, redemption_id: str) -> None:
        super().__init__(f"redemption {redemption_id}'s code was consumed: it cannot be cancelled")
        self.redemption_id = redemption_id

    def metadata(self) -> dict[str, str]:
        return {"redemption_id": self.redemption_id}


class ItemRetired(Refusal):
    """A retired item takes no new campaign; what it sold already goes on."""

    reason = "ITEM_RETIRED"

    def __init__(self, item_id: str, retired_at: str) -> None:
        super().__init__(f"item {item_id} was retired at {retired_at}: no new campaign takes it")
        self.item_id, self.retired_at = item_id, retired_at

    def metadata(self) -> dict[str, str]:
        return {"item_id": self.item_id, "retired_at": self.retired_at, "field": "item_id"}


class ItemHasLiveCampaign(Refusal):
    """A retire while a campaign of the item has not ended (ends_at still ahead, upcoming or
    on sale): EndCampaign it first. `campaign_id` names the one ending soonest."""

    reason = "ITEM_HAS_LIVE_CAMPAIGN"

    def __init__(self, item_id: str, campaign_id: str, ends_at: str, live: int) -> None:
        others = f" (and {live - 1} more)" if live > 1 else ""
        super().__init__(
            f"item {item_id} has campaign {campaign_id}{others} not ended (ends at "
            f"{ends_at}): end it before retiring the item"
        )
        self.item_id, self.campaign_id, self.ends_at, self.live = (
            item_id,
            campaign_id,
            ends_at,
            live,
        )

    def metadata(self) -> dict[str, str]:
        return {
            "item_id": self.item_id,
            "campaign_id": self.campaign_id,
            "ends_at": self.ends_at,
            "live_campaigns": str(self.live),
        }


class TooManyVariants(Refusal):
    reason = "TOO_MANY_VARIANTS"

    def __init__(self, product_id: str, limit: int) -> None:
        super().__init__(f"product {product_id} has its {limit} variants: no more fit")
        self.product_id, self.limit = product_id, limit

    def metadata(self) -> dict[str, str]:
        return {
            "product_id": self.product_id,
            "max_variants": str(self.limit),
            "field": "product_id",
        }
