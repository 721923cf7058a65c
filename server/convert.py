"""Protobuf <-> domain. Messages stop here: the domain sees dataclasses and plain values."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from common.errors import InvalidArgument
from flashsale.campaigns import Campaign
from flashsale.model import Address, BundlePart, Redemption
from inventory.catalogue import ItemState
from inventory.items import CodeSource, Item, ItemKind
from loyalty.v1 import (
    campaign_pb2,
    catalog_pb2,
    common_pb2,
    member_pb2,
    redemption_pb2,
)
from points.liability import Flows, LiabilityReport
from points.model import (
    Balance,
    Beneficiary,
    Earned,
    LedgerEntry,
    LedgerPage,
    Member,
    TierStatus,
)
from server import convert_fulfilment, convert_pricing

_KIND_TO_PB = {
    ItemKind.PHYSICAL: common_pb2.ITEM_KIND_PHYSICAL,
    ItemKind.VIRTUAL: common_pb2.ITEM_KIND_VIRTUAL,
    ItemKind.SERVICE: common_pb2.ITEM_KIND_SERVICE,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}
_STATUS_TO_PB = convert_fulfilment.STATUS_TO_PB


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
        code_source=_SOURCE_TO_PB[value.code_source],
        description=value.description,
        category=value.category or "",
        state=_STATE_TO_PB[value.state],
        retire_time=timestamp(value.retired_at),
        update_time=timestamp(value.updated_at or value.created_at),
        product_id=value.product_id or "",
        variant_attributes=value.variant_attributes,
    )


_STATE_TO_PB = {
    ItemState.ACTIVE: catalog_pb2.ITEM_STATE_ACTIVE,
    ItemState.RETIRED: catalog_pb2.ITEM_STATE_RETIRED,
}


_SOURCE_TO_PB = {
    CodeSource.GENERATED: catalog_pb2.CODE_SOURCE_GENERATED,
    CodeSource.POOL: catalog_pb2.CODE_SOURCE_POOL,
}


def code_source(value: int) -> CodeSource:
    """CreateItemRequest.code_source: unset is GENERATED (today's behaviour)."""
    if value in (catalog_pb2.CODE_SOURCE_UNSPECIFIED, catalog_pb2.CODE_SOURCE_GENERATED):
        return CodeSource.GENERATED
    if value == catalog_pb2.CODE_SOURCE_POOL:
        return CodeSource.POOL
    raise InvalidArgument("code_source", "must be CODE_SOURCE_GENERATED or CODE_SOURCE_POOL")


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
        stock_shards=m.stock_shards,
        price_rules=[convert_pricing.price_rule(r) for r in m.price_rules],
        points_back_percent=m.points_back_percent,
        bundle_parts=[bundle_part(p) for p in m.bundle],
        lottery_prize=m.lottery_prize,
    )


def bundle_part(value: BundlePart) -> campaign_pb2.BundlePart:
    return campaign_pb2.BundlePart(item_id=value.item_id, quantity=value.quantity)


def member(value: Member) -> member_pb2.Member:
    return member_pb2.Member(
        id=value.id,
        display_name=value.display_name,
        external_ref=value.external_ref or "",
        frozen=value.frozen,
        create_time=timestamp(value.created_at),
        frozen_reason=value.frozen_reason or "",
    )


def balance(value: Balance) -> common_pb2.Balance:
    return common_pb2.Balance(
        member_id=value.member_id,
        balance=value.balance,
        held=value.held,
        available=value.available,
        lifetime_earned=value.lifetime_earned,
        qualifying_points=value.qualifying,
        expiring_soon=value.expiring_soon,
        expiring_before=timestamp(value.expiring_before),
        tier=value.tier,
        tier_valid_until=timestamp(value.tier_valid_until),
        debt=value.debt,
        frozen=value.frozen,
        redemption_eligible=value.eligible,
        pending=value.pending,
        pending_until=timestamp(value.pending_until),
    )


def address_from_pb(request: Any) -> Address | None:
    """The shipping_address of a request that has one (RedeemRequest, DrawRequest)."""
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
        points_back=value.points_back,
        bundle_parts=[bundle_part(p) for p in value.bundle_parts],
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
    convert_fulfilment.fill(message, value)
    message.list_points_total = (
        value.list_points_total if value.list_points_total is not None else value.points_total
    )
    message.price_rule_id = value.price_rule_id or ""
    return message


# -- The points ledger -------------------------------------------------------------------

_ENTRY_KIND_TO_PB = {
    "earn": member_pb2.LEDGER_ENTRY_KIND_EARN,
    "redeem": member_pb2.LEDGER_ENTRY_KIND_REDEEM,
    "refund": member_pb2.LEDGER_ENTRY_KIND_REFUND,
    "expire": member_pb2.LEDGER_ENTRY_KIND_EXPIRE,
    "transfer": member_pb2.LEDGER_ENTRY_KIND_TRANSFER,
    "adjust": member_pb2.LEDGER_ENTRY_KIND_ADJUST,
    "reversal": member_pb2.LEDGER_ENTRY_KIND_REVERSAL,
}
_ENTRY_KIND_FROM_PB = {v: k for k, v in _ENTRY_KIND_TO_PB.items()}
_GRANULARITY_FROM_PB = {
    member_pb2.REPORT_GRANULARITY_UNSPECIFIED: "month",
    member_pb2.REPORT_GRANULARITY_MONTH: "month",
    member_pb2.REPORT_GRANULARITY_DAY: "day",
}


def optional_time(field: str, message: object, name: str) -> datetime | None:
    if not message.HasField(name):  # type: ignore[attr-defined]
        return None
    return required_time(field, message, name)


def entry_kinds(values: Iterable[int]) -> list[str]:
    kinds = []
    for value in values:
        kind: str | None = _ENTRY_KIND_FROM_PB.get(value)  # type: ignore[call-overload]
        if kind is None:
            raise InvalidArgument("kinds", f"unknown ledger entry kind {value}")
        kinds.append(kind)
    return kinds


def granularity(value: int) -> str:
    name: str | None = _GRANULARITY_FROM_PB.get(value)  # type: ignore[call-overload]
    if name is None:
        raise InvalidArgument("granularity", "must be REPORT_GRANULARITY_DAY or _MONTH")
    return name


# The responses that carry an Earned: one message per RPC, the same fields.
_EarnedResponse = TypeVar(
    "_EarnedResponse",
    member_pb2.EarnPointsResponse,
    member_pb2.EarnForPurchaseResponse,
    member_pb2.EarnForTaskResponse,
    member_pb2.AdjustPointsResponse,
)


def earned(value: Earned, response: type[_EarnedResponse]) -> _EarnedResponse:
    return response(
        ledger_entry_id=value.ledger_entry_id,
        balance=balance(value.balance),
        replayed=value.replayed,
        points=value.points,
    )


def tier_status(value: TierStatus) -> member_pb2.TierStatus:
    return member_pb2.TierStatus(
        member_id=value.member_id,
        tier=value.tier,
        valid_until=timestamp(value.valid_until),
        reached_tier=value.reached_tier,
        manual_tier=value.manual_tier,
        qualifying_points=value.qualifying,
        evaluate_time=timestamp(value.evaluated_at),
    )


# The responses that list a member's beneficiaries: one message per RPC, the same field.
_BeneficiariesResponse = TypeVar(
    "_BeneficiariesResponse",
    member_pb2.AddBeneficiaryResponse,
    member_pb2.RemoveBeneficiaryResponse,
    member_pb2.ListBeneficiariesResponse,
)


def beneficiaries(
    values: list[Beneficiary], response: type[_BeneficiariesResponse]
) -> _BeneficiariesResponse:
    return response(
        beneficiaries=[
            member_pb2.Beneficiary(
                member_id=b.member_id, display_name=b.display_name, add_time=timestamp(b.created_at)
            )
            for b in values
        ]
    )


def ledger_entry(value: LedgerEntry) -> member_pb2.LedgerEntry:
    return member_pb2.LedgerEntry(
        id=value.id,
        member_id=value.member_id,
        kind=_ENTRY_KIND_TO_PB[value.kind],
        amount=value.amount,
        balance_after=value.balance_after,
        debt_change=value.debt_change,
        debt_after=value.debt_after,
        reference=value.reference,
        reason=value.reason,
        operator_id=value.operator_id or "",
        counterparty_member_id=value.counterparty_id or "",
        create_time=timestamp(value.created_at),
        actor=value.actor or "",
        earn_rule_ids=list(value.earn_rule_ids),
    )


def ledger_page(value: LedgerPage) -> member_pb2.ListLedgerEntriesResponse:
    return member_pb2.ListLedgerEntriesResponse(
        entries=[ledger_entry(e) for e in value.entries], next_page_token=value.next_page_token
    )


def _flows(value: Flows) -> member_pb2.PeriodFlows:
    return member_pb2.PeriodFlows(
        period_start=timestamp(value.period_start),
        issued=value.issued,
        redeemed=value.redeemed,
        expired=value.expired,
        reversed=value.reversed,
        adjusted=value.adjusted,
        transferred=value.transferred,
    )


def liability_report(value: LiabilityReport) -> member_pb2.LiabilityReport:
    return member_pb2.LiabilityReport(
        as_of=timestamp(value.as_of),
        outstanding_points=value.outstanding,
        outstanding_by_expiry=[
            member_pb2.ExpiryBucket(expiry_month=month, points=points)
            for month, points in value.by_expiry_month
        ],
        outstanding_debt=value.debt,
        periods=[_flows(p) for p in value.periods],
        totals=_flows(value.totals),
        redemption_rate=value.redemption_rate,
        breakage_estimate_points=value.breakage_estimate,
        pending_points=value.pending,
        next_pending_activation=timestamp(value.next_pending_activation),
    )


def to_json(message: Message, *, indent: int | None = None) -> str:
    """A message as the CLI's `--json` prints it: proto3's JSON mapping with the protos'
    own snake_case field names (what the API calls them), every field present even at its
    default. int64 fields are JSON strings ("1200"), as the mapping says (beyond 2^53 a JSON
    number loses digits); json_format.Parse reads the text back into the message."""
    return json.dumps(
        json_format.MessageToDict(
            message,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        ),
        indent=indent,
        ensure_ascii=False,
    )
