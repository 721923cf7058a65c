"""gRPC servicers: thin adapters. Each method converts the request, calls the domain, and
converts the answer; errors are mapped once, by server.interceptors.ErrorInterceptor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from flashsale.campaigns import Campaigns
from flashsale.redemptions import RedeemRequest, Redemptions
from inventory.items import Catalog
from loyalty.v1 import (
    campaign_pb2,
    campaign_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    member_pb2,
    member_pb2_grpc,
    redemption_pb2,
    redemption_pb2_grpc,
)
from points.members import Members
from server import convert

if TYPE_CHECKING:  # the stubs make it generic
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class CatalogService(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def CreateItem(
        self, request: catalog_pb2.CreateItemRequest, context: Context
    ) -> catalog_pb2.Item:
        created = await self._catalog.create_item(
            sku=request.sku,
            name=request.name,
            kind=convert.item_kind(request.kind),
            initial_stock=request.initial_stock,
        )
        return convert.item(created)

    async def GetItem(
        self, request: catalog_pb2.GetItemRequest, context: Context
    ) -> catalog_pb2.Item:
        return convert.item(await self._catalog.get_item(request.item_id))

    async def AdjustStock(
        self, request: catalog_pb2.AdjustStockRequest, context: Context
    ) -> catalog_pb2.AdjustStockResponse:
        adjusted = await self._catalog.adjust_stock(
            item_id=request.item_id,
            delta=request.delta,
            reason=request.reason,
            idempotency_key=request.idempotency_key,
        )
        return catalog_pb2.AdjustStockResponse(
            item=convert.item(adjusted.item),
            adjustment_id=adjusted.adjustment_id,
            replayed=adjusted.replayed,
        )


class CampaignService(campaign_pb2_grpc.CampaignServiceServicer):
    def __init__(self, campaigns: Campaigns) -> None:
        self._campaigns = campaigns

    async def CreateCampaign(
        self, request: campaign_pb2.CreateCampaignRequest, context: Context
    ) -> campaign_pb2.Campaign:
        created = await self._campaigns.create(
            item_id=request.item_id,
            name=request.name,
            units_allotted=request.units_allotted,
            points_price=request.points_price,
            cash_price_cents=request.cash_price_cents,
            per_member_limit=request.per_member_limit,
            starts_at=convert.required_time("starts_at", request, "starts_at"),
            ends_at=convert.required_time("ends_at", request, "ends_at"),
        )
        return convert.campaign(created)

    async def GetCampaign(
        self, request: campaign_pb2.GetCampaignRequest, context: Context
    ) -> campaign_pb2.Campaign:
        return convert.campaign(await self._campaigns.get(request.campaign_id))

    async def ListCampaigns(
        self, request: campaign_pb2.ListCampaignsRequest, context: Context
    ) -> campaign_pb2.ListCampaignsResponse:
        page = await self._campaigns.list_page(
            active_only=request.active_only,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return campaign_pb2.ListCampaignsResponse(
            campaigns=[convert.campaign(c) for c in page.campaigns],
            next_page_token=page.next_page_token,
        )


class MemberService(member_pb2_grpc.MemberServiceServicer):
    def __init__(self, members: Members) -> None:
        self._members = members

    async def CreateMember(
        self, request: member_pb2.CreateMemberRequest, context: Context
    ) -> member_pb2.Member:
        created = await self._members.create(
            display_name=request.display_name, external_ref=request.external_ref or None
        )
        return convert.member(created)

    async def GetMember(
        self, request: member_pb2.GetMemberRequest, context: Context
    ) -> member_pb2.Member:
        return convert.member(await self._members.get(request.member_id))

    async def EarnPoints(
        self, request: member_pb2.EarnPointsRequest, context: Context
    ) -> member_pb2.EarnPointsResponse:
        earned = await self._members.earn(
            member_id=request.member_id,
            points=request.points,
            reason=request.reason,
            idempotency_key=request.idempotency_key,
        )
        return member_pb2.EarnPointsResponse(
            ledger_entry_id=earned.ledger_entry_id,
            balance=convert.balance(earned.balance),
            replayed=earned.replayed,
        )

    async def GetBalance(
        self, request: member_pb2.MemberServiceGetBalanceRequest, context: Context
    ) -> common_pb2.Balance:
        return convert.balance(await self._members.balance(request.member_id))

    async def EarnForPurchase(
        self, request: member_pb2.EarnForPurchaseRequest, context: Context
    ) -> member_pb2.EarnForPurchaseResponse:
        earned = await self._members.earn_for_purchase(
            member_id=request.member_id,
            amount_cents=request.amount_cents,
            event_id=request.event_id,
        )
        return convert.earned(earned, member_pb2.EarnForPurchaseResponse)

    async def EarnForTask(
        self, request: member_pb2.EarnForTaskRequest, context: Context
    ) -> member_pb2.EarnForTaskResponse:
        earned = await self._members.earn_for_task(
            member_id=request.member_id, rule=request.rule, event_id=request.event_id
        )
        return convert.earned(earned, member_pb2.EarnForTaskResponse)

    async def ReversePurchase(
        self, request: member_pb2.ReversePurchaseRequest, context: Context
    ) -> member_pb2.ReversePurchaseResponse:
        reversed_ = await self._members.reverse_purchase(
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
        adjusted = await self._members.adjust(
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
        frozen = await self._members.freeze(
            member_id=request.member_id, reason=request.reason, operator_id=request.operator_id
        )
        return convert.member(frozen)

    async def UnfreezeMember(
        self, request: member_pb2.UnfreezeMemberRequest, context: Context
    ) -> member_pb2.Member:
        unfrozen = await self._members.unfreeze(
            member_id=request.member_id, reason=request.reason, operator_id=request.operator_id
        )
        return convert.member(unfrozen)

    async def SetManualTier(
        self, request: member_pb2.SetManualTierRequest, context: Context
    ) -> member_pb2.TierStatus:
        status = await self._members.set_manual_tier(
            member_id=request.member_id,
            tier=request.tier,
            reason=request.reason,
            operator_id=request.operator_id,
        )
        return convert.tier_status(status)

    async def EvaluateTier(
        self, request: member_pb2.EvaluateTierRequest, context: Context
    ) -> member_pb2.TierStatus:
        return convert.tier_status(await self._members.evaluate_tier(member_id=request.member_id))

    async def AddBeneficiary(
        self, request: member_pb2.AddBeneficiaryRequest, context: Context
    ) -> member_pb2.AddBeneficiaryResponse:
        listed = await self._members.add_beneficiary(
            member_id=request.member_id, beneficiary_id=request.beneficiary_id
        )
        return convert.beneficiaries(listed, member_pb2.AddBeneficiaryResponse)

    async def RemoveBeneficiary(
        self, request: member_pb2.RemoveBeneficiaryRequest, context: Context
    ) -> member_pb2.RemoveBeneficiaryResponse:
        listed = await self._members.remove_beneficiary(
            member_id=request.member_id, beneficiary_id=request.beneficiary_id
        )
        return convert.beneficiaries(listed, member_pb2.RemoveBeneficiaryResponse)

    async def ListBeneficiaries(
        self, request: member_pb2.ListBeneficiariesRequest, context: Context
    ) -> member_pb2.ListBeneficiariesResponse:
        return convert.beneficiaries(
            await self._members.beneficiaries(request.member_id),
            member_pb2.ListBeneficiariesResponse,
        )

    async def TransferPoints(
        self, request: member_pb2.TransferPointsRequest, context: Context
    ) -> member_pb2.TransferPointsResponse:
        moved = await self._members.transfer(
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
        page = await self._members.entries(
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
        report = await self._members.liability_report(
            start=convert.required_time("start_time", request, "start_time"),
            end=convert.required_time("end_time", request, "end_time"),
            granularity=convert.granularity(request.granularity),
        )
        return convert.liability_report(report)


class RedemptionService(redemption_pb2_grpc.RedemptionServiceServicer):
    def __init__(self, redemptions: Redemptions, members: Members) -> None:
        self._redemptions = redemptions
        self._members = members

    async def Redeem(
        self, request: redemption_pb2.RedeemRequest, context: Context
    ) -> redemption_pb2.RedeemResponse:
        redeemed = await self._redemptions.redeem(
            RedeemRequest(
                member_id=request.member_id,
                campaign_id=request.campaign_id,
                quantity=request.quantity,
                idempotency_key=request.idempotency_key,
                shipping_address=convert.address_from_pb(request),
            )
        )
        return redemption_pb2.RedeemResponse(
            redemption=convert.redemption(redeemed.redemption), replayed=redeemed.replayed
        )

    async def GetRedemption(
        self, request: redemption_pb2.GetRedemptionRequest, context: Context
    ) -> redemption_pb2.Redemption:
        return convert.redemption(await self._redemptions.get(request.redemption_id))

    async def CancelRedemption(
        self, request: redemption_pb2.CancelRedemptionRequest, context: Context
    ) -> redemption_pb2.Redemption:
        cancelled = await self._redemptions.cancel(
            redemption_id=request.redemption_id, member_id=request.member_id, reason=request.reason
        )
        return convert.redemption(cancelled)

    async def ConfirmPayment(
        self, request: redemption_pb2.ConfirmPaymentRequest, context: Context
    ) -> redemption_pb2.Redemption:
        confirmed = await self._redemptions.confirm_payment(
            redemption_id=request.redemption_id, payment_reference=request.payment_reference
        )
        return convert.redemption(confirmed)

    async def ListRedemptions(
        self, request: redemption_pb2.ListRedemptionsRequest, context: Context
    ) -> redemption_pb2.ListRedemptionsResponse:
        page = await self._redemptions.list_for_member(
            member_id=request.member_id, page_size=request.page_size, page_token=request.page_token
        )
        return redemption_pb2.ListRedemptionsResponse(
            redemptions=[convert.redemption(r) for r in page.redemptions],
            next_page_token=page.next_page_token,
        )

    async def GetBalance(
        self, request: redemption_pb2.RedemptionServiceGetBalanceRequest, context: Context
    ) -> common_pb2.Balance:
        return convert.balance(await self._members.balance(request.member_id))
