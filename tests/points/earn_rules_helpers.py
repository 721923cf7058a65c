"""Shared steps for earn rule and pending points tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loyalty.v1 import earn_rules_pb2, earn_rules_pb2_grpc, member_pb2
from tests.conftest import Running
from tests.factories import key

if TYPE_CHECKING:
    from loyalty.v1.earn_rules_pb2_grpc import EarnRuleServiceAsyncStub

MULTIPLIER = earn_rules_pb2.EARN_RULE_KIND_MULTIPLIER
BONUS = earn_rules_pb2.EARN_RULE_KIND_BONUS


def rules_api(running: Running) -> EarnRuleServiceAsyncStub:
    return earn_rules_pb2_grpc.EarnRuleServiceStub(running.channel)


async def create_rule(
    running: Running, name: str, kind: int, conditions: dict[str, Any] | None = None, **fields: Any
) -> earn_rules_pb2.EarnRule:
    rule = earn_rules_pb2.EarnRule(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        conditions=earn_rules_pb2.EarnRuleConditions(**(conditions or {})),
        **fields,
    )
    return await rules_api(running).CreateEarnRule(earn_rules_pb2.CreateEarnRuleRequest(rule=rule))


async def buy(
    running: Running, member_id: str, cents: int, event: str | None = None, **extra: Any
) -> member_pb2.EarnForPurchaseResponse:
    return await running.api.members.EarnForPurchase(
        member_pb2.EarnForPurchaseRequest(
            member_id=member_id, amount_cents=cents, event_id=event or key(), **extra
        )
    )
