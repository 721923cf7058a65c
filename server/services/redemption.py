"""RedemptionService. Gateway-facing: what a member does in the mall."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flashsale.admission import Admission
from flashsale.lifecycle import Lifecycle
from flashsale.model import RedeemRequest
from flashsale.offers import Offers
from flashsale.quotes import Quotes
from flashsale.reads import RedemptionReads
from loyalty.v1 import common_pb2, member_pb2, redemption_pb2, redemption_pb2_grpc
from points.members import Members
from points.statements import Statements
from server import convert, convert_campaigns, convert_pricing

if TYPE_CHECKING:
    from server.services import Context


class RedemptionService(redemption_pb2_grpc.RedemptionServiceServicer):
    def __init__(
        self,
        admission: Admission,
        lifecycle: Lifecycle,
        reads: RedemptionReads,
        members: Members,
        offers: Offers,
        statements: Statements,
        quotes: Quotes,
    ) -> None:
        self._quotes = quotes
        self._admission = admission
        self._lifecycle = lifecycle
        self._reads = reads
        self._members = members
        self._offers = offers
        self._statements = statements

    async def Redeem(
        self, request: redemption_pb2.RedeemRequest, context: Context
    ) -> redemption_pb2.RedeemResponse:
        redeemed = await self._admission.redeem(
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
        return convert.redemption(
            await self._reads.get(redemption_id=request.redemption_id, member_id=request.member_id)
        )

    async def CancelRedemption(
        self, request: redemption_pb2.CancelRedemptionRequest, context: Context
    ) -> redemption_pb2.Redemption:
        cancelled = await self._lifecycle.cancel(
            redemption_id=request.redemption_id, member_id=request.member_id, reason=request.reason
        )
        return convert.redemption(cancelled)

    async def ConfirmPayment(
        self, request: redemption_pb2.ConfirmPaymentRequest, context: Context
    ) -> redemption_pb2.Redemption:
        confirmed = await self._lifecycle.confirm_payment(
            redemption_id=request.redemption_id,
            member_id=request.member_id,
            payment_reference=request.payment_reference,
            amount_cents=request.amount_cents,
            currency=request.currency,
        )
        return convert.redemption(confirmed)

    async def ListRedemptions(
        self, request: redemption_pb2.ListRedemptionsRequest, context: Context
    ) -> redemption_pb2.ListRedemptionsResponse:
        page = await self._reads.list_for_member(
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

    async def LookupMember(
        self, request: redemption_pb2.RedemptionServiceLookupMemberRequest, context: Context
    ) -> member_pb2.Member:
        return convert.member(await self._members.lookup(request.external_ref))

    async def ListOffers(
        self, request: redemption_pb2.ListOffersRequest, context: Context
    ) -> redemption_pb2.ListOffersResponse:
        page = await self._offers.list_page(
            windows=convert_campaigns.offer_windows(request.window),
            item_kind=convert_campaigns.kind_filter(request.item_kind),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return redemption_pb2.ListOffersResponse(
            offers=[convert_campaigns.offer(o) for o in page.offers],
            next_page_token=page.next_page_token,
        )

    async def GetOffer(
        self, request: redemption_pb2.GetOfferRequest, context: Context
    ) -> redemption_pb2.Offer:
        return convert_campaigns.offer(await self._offers.get(request.campaign_id))

    async def ListLedgerEntries(
        self, request: redemption_pb2.RedemptionServiceListLedgerEntriesRequest, context: Context
    ) -> redemption_pb2.RedemptionServiceListLedgerEntriesResponse:
        page = await self._statements.entries(
            member_id=request.member_id,
            page_size=request.page_size,
            page_token=request.page_token,
            kinds=convert.entry_kinds(request.kinds),
            start=convert.optional_time("start_time", request, "start_time"),
            end=convert.optional_time("end_time", request, "end_time"),
        )
        return redemption_pb2.RedemptionServiceListLedgerEntriesResponse(
            entries=[convert.ledger_entry(e) for e in page.entries],
            next_page_token=page.next_page_token,
        )

    async def QuotePrice(
        self, request: redemption_pb2.QuotePriceRequest, context: Context
    ) -> redemption_pb2.QuotePriceResponse:
        quote = await self._quotes.quote(
            member_id=request.member_id,
            campaign_id=request.campaign_id,
            quantity=request.quantity,
        )
        return convert_pricing.quote(quote)
