"""EarnRuleService. Operators define earn rules; the mall previews what a purchase earns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loyalty.v1 import earn_rules_pb2, earn_rules_pb2_grpc
from points import PointsLedger
from points.program import utc_now
from server import convert, convert_earn_rules

if TYPE_CHECKING:
    from server.services import Context


class EarnRuleService(earn_rules_pb2_grpc.EarnRuleServiceServicer):
    def __init__(self, ledger: PointsLedger) -> None:
        self._ledger = ledger

    async def CreateEarnRule(
        self, request: earn_rules_pb2.CreateEarnRuleRequest, context: Context
    ) -> earn_rules_pb2.EarnRule:
        rule = convert_earn_rules.rule_from_pb(request.rule)
        created = await self._ledger.earn_rules.create(rule, now=utc_now())
        return convert_earn_rules.rule(created)

    async def GetEarnRule(
        self, request: earn_rules_pb2.GetEarnRuleRequest, context: Context
    ) -> earn_rules_pb2.EarnRule:
        return convert_earn_rules.rule(await self._ledger.earn_rules.get(request.id))

    async def ListEarnRules(
        self, request: earn_rules_pb2.ListEarnRulesRequest, context: Context
    ) -> earn_rules_pb2.ListEarnRulesResponse:
        rules = await self._ledger.earn_rules.list(include_ended=request.include_ended)
        return earn_rules_pb2.ListEarnRulesResponse(
            rules=[convert_earn_rules.rule(r) for r in rules]
        )

    async def EndEarnRule(
        self, request: earn_rules_pb2.EndEarnRuleRequest, context: Context
    ) -> earn_rules_pb2.EarnRule:
        return convert_earn_rules.rule(await self._ledger.earn_rules.end(request.id))

    async def PreviewEarn(
        self, request: earn_rules_pb2.PreviewEarnRequest, context: Context
    ) -> earn_rules_pb2.PreviewEarnResponse:
        preview = await self._ledger.earning.preview(
            member_id=request.member_id,
            amount_cents=request.amount_cents,
            channel=request.channel,
            category=request.category,
            at=convert.optional_time("at", request, "at"),
        )
        return earn_rules_pb2.PreviewEarnResponse(
            base_points=preview.base_points,
            tier=preview.tier,
            points=preview.points,
            rules=[convert_earn_rules.applied(a) for a in preview.rules],
        )
