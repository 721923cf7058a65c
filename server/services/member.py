"""MemberService. Operators and the mall: members and their points ledger."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

from loyalty.v1 import common_pb2, member_pb2, member_pb2_grpc
from points import PointsLedger
from server import convert, convert_earn_rules

if TYPE_CHECKING:
    from server.services import Context


class MemberService(member_pb2_grpc.MemberServiceServicer):
    def __init__(self, ledger: PointsLedger) -> None:
        self._ledger = ledger

    async def CreateMember(
        self, request: member_pb2.CreateMemberRequest, context: Context
    ) -> member_pb2.Member:
        created = await self._ledger.members.create(
            display_name=request.display_name,
            external_ref=request.external_ref or None,
            request_id=request.request_id,
        )
        return convert.member(created)

    async def GetMember(
        self, request: member_pb2.GetMemberRequest, context: Context
    ) -> member_pb2.Member:
        return convert.member(await self._ledger.members.get(request.member_id))

    async def LookupMember(
        self, request: member_pb2.LookupMemberRequest, context: Context
    ) -> member_pb2.Member:
        return convert.member(await self._ledger.members.lookup(request.external_ref))

    async def EarnPoints(
        self, request: member_pb2.EarnPointsRequest, context: Context
    ) -> member_pb2.EarnPointsResponse:
        earned = await self._ledger.earning.earn(
            member_id=request.member_id,
            points=request.points,
            reason=request.reason,
            idempotency_key=request.idempotency_key,
        )
        return convert.earned(earned, member_pb2.EarnPointsResponse)

    async def GetBalance(
        self, request: member_pb2.MemberServiceGetBalanceRequest, context: Context
    ) -> common_pb2.Balance:
        return convert.balance(await self._ledger.members.balance(request.member_id))

    async def EarnForPurchase(
        self, request: member_pb2.EarnForPurchaseRequest, context: Context
    ) -> member_pb2.EarnForPurchaseResponse:
        earned = await self._ledger.earning.earn_for_purchase(
            member_id=request.member_id,
            amount_cents=request.amount_cents,
            event_id=request.event_id,
            channel=request.channel,
            category=request.category,
            pending_until=convert.optional_time("pending_until", request, "pending_until"),
        )
        response = convert.earned(earned, member_pb2.EarnForPurchaseResponse)
        response.applied_rules.extend(convert_earn_rules.applied(a) for a in earned.applied)
        response.base_points = earned.base_points
        response.pending = earned.pending_until is not None
        if earned.pending_until is not None:
            response.pending_until.FromDatetime(earned.pending_until.astimezone(UTC))
        return response

    async def EarnForTask(
        self, request: member_pb2.EarnForTaskRequest, context: Context
    ) -> member_pb2.EarnForTaskResponse:
        earned = await self._ledger.earning.earn_for_task(
            member_id=request.member_id, rule=request.rule, event_id=request.event_id
        )
        return convert.earned(earned, member_pb2.EarnForTaskResponse)

    async def ReversePurchase(
        self, request: member_pb2.ReversePurchaseRequest, context: Context
    ) -> member_pb2.ReversePurchaseResponse:
        reversed_ = await self._ledger.corrections.reverse_purchase(
            member_id=request.member_id,
            purchase_event_id=request.purchase_event_id,
            amount_cents=request.amount_cents,
            event_id=request.event_id,
        )
        return member_pb2.ReversePurchaseResponse(
            points_reversed=reversed_.points,
            points_taken=reversed_.taken,
            debt_added=reversed_.debt,
            ledger_entry_id=reversed_.ledger_entry_id,
            balance=convert.balance(reversed_.balance),
            replayed=reversed_.replayed,
        )

    async def AdjustPoints(
        self, request: member_pb2.AdjustPointsRequest, context: Context
    ) -> member_pb2.AdjustPointsResponse:
        adjusted = await self._ledger.corrections.adjust(
            member_id=request.member_id,
            delta=request.delta,
            reason=request.reason,
            operator_id=request.operator_id,
            idempotency_key=request.idempotency_key,
        )
        return convert.earned(adjusted, member_pb2.AdjustPointsResponse)

    async def FreezeMember(
        self, request: member_pb2.FreezeMemberRequest, context: Context
    ) -> member_pb2.Member:
        frozen = await self._ledger.members.freeze(
            member_id=request.member_id, reason=request.reason, operator_id=request.operator_id
        )
        return convert.member(frozen)

    async def UnfreezeMember(
        self, request: member_pb2.UnfreezeMemberRequest, context: Context
    ) -> member_pb2.Member:
        unfrozen = await self._ledger.members.unfreeze(
            member_id=request.member_id, reason=request.reason, operator_id=request.operator_id
        )
        return convert.member(unfrozen)

    async def SetManualTier(
        self, request: member_pb2.SetManualTierRequest, context: Context
    ) -> member_pb2.TierStatus:
        status = await self._ledger.tiers.set_manual_tier(
            member_id=request.member_id,
            tier=request.tier,
            reason=request.reason,
            operator_id=request.operator_id,
        )
        return convert.tier_status(status)

    async def EvaluateTier(
        self, request: member_pb2.EvaluateTierRequest, context: Context
    ) -> member_pb2.TierStatus:
        return convert.tier_status(
            await self._ledger.tiers.evaluate_tier(member_id=request.member_id)
        )

    async def AddBeneficiary(
        self, request: member_pb2.AddBeneficiaryRequest, context: Context
    ) -> member_pb2.AddBeneficiaryResponse:
        listed = await self._ledger.transfers.add_beneficiary(
            member_id=request.member_id, beneficiary_id=request.beneficiary_id
        )
        return convert.beneficiaries(listed, member_pb2.AddBeneficiaryResponse)

    async def RemoveBeneficiary(
        self, request: member_pb2.RemoveBeneficiaryRequest, context: Context
    ) -> member_pb2.RemoveBeneficiaryResponse:
        listed = await self._ledger.transfers.remove_beneficiary(
            member_id=request.member_id, beneficiary_id=request.beneficiary_id
        )
        return convert.beneficiaries(listed, member_pb2.RemoveBeneficiaryResponse)

    async def ListBeneficiaries(
        self, request: member_pb2.ListBeneficiariesRequest, context: Context
    ) -> member_pb2.ListBeneficiariesResponse:
        return convert.beneficiaries(
            await self._ledger.transfers.beneficiaries(request.member_id),
            member_pb2.ListBeneficiariesResponse,
        )

    async def TransferPoints(
        self, request: member_pb2.TransferPointsRequest, context: Context
    ) -> member_pb2.TransferPointsResponse:
        moved = await self._ledger.transfers.transfer(
            from_member_id=request.from_member_id,
            to_member_id=request.to_member_id,
            points=request.points,
            idempotency_key=request.idempotency_key,
        )
        return member_pb2.TransferPointsResponse(
            transfer_id=moved.transfer_id,
            from_balance=convert.balance(moved.from_balance),
            to_balance=convert.balance(moved.to_balance),
            replayed=moved.replayed,
        )

    async def ListLedgerEntries(
        self, request: member_pb2.ListLedgerEntriesRequest, context: Context
    ) -> member_pb2.ListLedgerEntriesResponse:
        page = await self._ledger.statements.entries(
            member_id=request.member_id,
            page_size=request.page_size,
            page_token=request.page_token,
            kinds=convert.entry_kinds(request.kinds),
            start=convert.optional_time("start_time", request, "start_time"),
            end=convert.optional_time("end_time", request, "end_time"),
        )
        return convert.ledger_page(page)

    async def GetLiabilityReport(
        self, request: member_pb2.GetLiabilityReportRequest, context: Context
    ) -> member_pb2.LiabilityReport:
        report = await self._ledger.statements.liability_report(
            start=convert.required_time("start_time", request, "start_time"),
            end=convert.required_time("end_time", request, "end_time"),
            granularity=convert.granularity(request.granularity),
        )
        return convert.liability_report(report)
