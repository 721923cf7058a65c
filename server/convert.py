"""Protobuf <-> domain. Messages stop here: the domain sees dataclasses and plain values."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from common.errors import InvalidArgument
from flashsale.campaigns import Campaign
from flashsale.redemptions import Address, Redemption, RedemptionStatus
from inventory.items import Item, ItemKind
from points.members import Balance, Member
from protos.loyalty.v1 import (
    campaign_pb2,
    catalog_pb2,
    common_pb2,
    member_pb2,
    redemption_pb2,
)

_KIND_TO_PB = {
    ItemKind.PHYSICAL: common_pb2.ITEM_KIND_PHYSICAL,
    ItemKind.VIRTUAL: common_pb2.ITEM_KIND_VIRTUAL,
    ItemKind.SERVICE: common_pb2.ITEM_KIND_SERVICE,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}
_STATUS_TO_PB = {
    RedemptionStatus.PENDING_PAYMENT: redemption_pb2.REDEMPTION_STATUS_PENDING_PAYMENT,
    RedemptionStatus.COMMITTED: redemption_pb2.REDEMPTION_STATUS_COMMITTED,
    RedemptionStatus.CANCELLED: redemption_pb2.REDEMPTION_STATUS_CANCELLED,
    RedemptionStatus.EXPIRED: redemption_pb2.REDEMPTION_STATUS_EXPIRED,
}


def timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


def required_time(field: str, message: object, name: str) -> datetime:
    if not message.HasField(name):  # type: ignore[attr-defined]
        raise InvalidArgument(field, "is required")
    ts: Timestamp = getattr(message, name)
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(field, "is not a valid timestamp") from None


def item_kind(value: int) -> ItemKind:
    kind: ItemKind | None = _KIND_FROM_PB.get(value)  # type: ignore[call-overload]
    if kind is None:
        raise InvalidArgument(
            "kind", "must be ITEM_KIND_PHYSICAL, ITEM_KIND_VIRTUAL or ITEM_KIND_SERVICE"
        )
    return kind


def item(value: Item) -> catalog_pb2.Item:
    return catalog_pb2.Item(
        id=value.id,
        sku=value.sku,
        name=value.name,
        kind=_KIND_TO_PB[value.kind],
        stock_on_hand=value.stock_on_hand,
        create_time=timestamp(value.created_at),
    )


def campaign(value: Campaign) -> campaign_pb2.Campaign:
    m = value.meta
    return campaign_pb2.Campaign(
        id=m.id,
        item_id=m.item_id,
        name=m.name,
        units_allotted=m.units_allotted,
        points_price=m.points_price,
        cash_price_cents=m.cash_price_cents,
        per_member_limit=m.per_member_limit,
        starts_at=timestamp(m.starts_at),
        ends_at=timestamp(m.ends_at),
        units_remaining=value.units_remaining,
        units_held=value.units_held,
        units_committed=value.units_committed,
        create_time=timestamp(m.created_at),
    )


def member(value: Member) -> member_pb2.Member:
    return member_pb2.Member(
        id=value.id,
        display_name=value.display_name,
        external_ref=value.external_ref or "",
        frozen=value.frozen,
        create_time=timestamp(value.created_at),
    )


def balance(value: Balance) -> common_pb2.Balance:
    return common_pb2.Balance(
        member_id=value.member_id,
        balance=value.balance,
        held=value.held,
        available=value.available,
    )


def address_from_pb(request: redemption_pb2.RedeemRequest) -> Address | None:
    if not request.HasField("shipping_address"):
        return None
    a = request.shipping_address
    return Address(
        recipient=a.recipient,
        line1=a.line1,
        line2=a.line2,
        city=a.city,
        region=a.region,
        postal_code=a.postal_code,
        country_code=a.country_code,
        phone=a.phone,
    )


def redemption(value: Redemption) -> redemption_pb2.Redemption:
    message = redemption_pb2.Redemption(
        id=value.id,
        member_id=value.member_id,
        campaign_id=value.campaign_id,
        item_id=value.item_id,
        quantity=value.quantity,
        points_total=value.points_total,
        cash_total_cents=value.cash_total_cents,
        status=_STATUS_TO_PB[value.status],
        redemption_code=value.redemption_code or "",
        idempotency_key=value.idempotency_key,
        create_time=timestamp(value.created_at),
        update_time=timestamp(value.updated_at),
        payment_due_at=timestamp(value.payment_due_at),
        payment_reference=value.payment_reference or "",
    )
    if value.shipping_address is not None:
        a = value.shipping_address
        message.shipping_address.CopyFrom(
            common_pb2.ShippingAddress(
                recipient=a.recipient,
                line1=a.line1,
                line2=a.line2,
                city=a.city,
                region=a.region,
                postal_code=a.postal_code,
                country_code=a.country_code,
                phone=a.phone,
            )
        )
    return message
