"""Protobuf <-> domain for price rules (flashsale/pricing.py) and price quotes."""

from __future__ import annotations

from collections.abc import Iterable

from common.errors import InvalidArgument
from flashsale.pricing import PriceRule
from flashsale.quotes import Quote
from loyalty.v1 import campaign_pb2, redemption_pb2
from server import convert


def price_rules(values: Iterable[campaign_pb2.PriceRule]) -> list[PriceRule]:
    """A request's rules; errors name price_rules[i].<field>. The rest of the checks (the
    windows, the tiers, the bounds) are the domain's (pricing.check_rules)."""
    rules = []
    for i, value in enumerate(values):
        field = f"price_rules[{i}]"
        which = value.WhichOneof("price")
        if which is None:
            raise InvalidArgument(f"{field}.price", "give exactly one of percent or points_price")
        rules.append(
            PriceRule(
                name=value.name,
                starts_at=convert.required_time(f"{field}.starts_at", value, "starts_at"),
                ends_at=convert.required_time(f"{field}.ends_at", value, "ends_at"),
                tier=value.tier or None,
                percent=value.percent if which == "percent" else None,
                points_price=value.points_price if which == "points_price" else None,
            )
        )
    return rules


def price_rule(value: PriceRule) -> campaign_pb2.PriceRule:
    message = campaign_pb2.PriceRule(
        id=value.id,
        name=value.name,
        starts_at=convert.timestamp(value.starts_at),
        ends_at=convert.timestamp(value.ends_at),
        tier=value.tier or "",
    )
    if value.percent is not None:
        message.percent = value.percent
    else:
        message.points_price = value.points_price or 0
    return message


def quote(value: Quote) -> redemption_pb2.QuotePriceResponse:
    price = value.price
    return redemption_pb2.QuotePriceResponse(
        list_points_total=price.list_total(value.quantity),
        points_total=price.total(value.quantity),
        cash_total_cents=value.cash_total_cents,
        price_rule=price_rule(price.rule) if price.rule is not None else None,
        price_valid_until=convert.timestamp(price.valid_until),
    )
