"""Earn rules between protobuf and points/earn_rules.py (server/convert.py is near its size
limit)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from common.errors import InvalidArgument
from loyalty.v1 import earn_rules_pb2
from points.earn_rules import Conditions, EarnRule
from points.earn_rules_eval import Applied
from server.convert import optional_time, timestamp

_KIND_TO_PB = {
    "MULTIPLIER": earn_rules_pb2.EARN_RULE_KIND_MULTIPLIER,
    "BONUS": earn_rules_pb2.EARN_RULE_KIND_BONUS,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}


def rule_from_pb(value: earn_rules_pb2.EarnRule) -> EarnRule:
    multiplier: Decimal | None = None
    if value.multiplier:
        try:
            multiplier = Decimal(value.multiplier)
        except InvalidOperation:
            raise InvalidArgument("multiplier", "must be a decimal number, e.g. 2 or 1.5") from None
    c = value.conditions
    return EarnRule(
        id="",
        name=value.name,
        kind=_KIND_FROM_PB.get(value.kind, ""),
        multiplier=multiplier,
        bonus_points=value.bonus_points or None,
        conditions=Conditions(
            tuple(c.days_of_month),
            tuple(c.weekdays),
            tuple(c.hours),
            optional_time("starts_at", c, "starts_at"),
            optional_time("ends_at", c, "ends_at"),
            tuple(c.tiers),
            c.min_amount_cents,
            tuple(c.channels),
            tuple(c.categories),
            tuple(c.card_types),
        ),
        time_zone=value.time_zone,
        budget_points=value.budget_points or None,
        per_member_cap=value.per_member_cap or None,
        priority=value.priority,
    )


def rule(value: EarnRule) -> earn_rules_pb2.EarnRule:
    c = value.conditions
    return earn_rules_pb2.EarnRule(
        id=value.id,
        name=value.name,
        kind=_KIND_TO_PB[value.kind],
        multiplier=str(value.multiplier.normalize()) if value.multiplier is not None else "",
        bonus_points=value.bonus_points or 0,
        conditions=earn_rules_pb2.EarnRuleConditions(
            days_of_month=list(c.days_of_month),
            weekdays=list(c.weekdays),
            hours=list(c.hours),
            starts_at=timestamp(c.starts_at),
            ends_at=timestamp(c.ends_at),
            tiers=list(c.tiers),
            min_amount_cents=c.min_amount_cents,
            channels=list(c.channels),
            categories=list(c.categories),
            card_types=list(c.card_types),
        ),
        time_zone=value.time_zone,
        budget_points=value.budget_points or 0,
        given_points=value.given_points,
        per_member_cap=value.per_member_cap or 0,
        priority=value.priority,
        create_time=timestamp(value.created_at),
        end_time=timestamp(value.ended_at),
    )


def applied(value: Applied) -> earn_rules_pb2.AppliedEarnRule:
    return earn_rules_pb2.AppliedEarnRule(
        rule_id=value.rule_id,
        name=value.name,
        kind=_KIND_TO_PB.get(value.kind, earn_rules_pb2.EARN_RULE_KIND_UNSPECIFIED),
        points=value.points,
        wanted_points=value.wanted,
        limited_by=value.limited_by,
    )
