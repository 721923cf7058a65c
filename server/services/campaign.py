"""CampaignService. Operators: flash-sale campaigns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flashsale.campaigns import Campaigns
from flashsale.changes import CampaignChanges
from flashsale.model import BundlePart
from loyalty.v1 import campaign_pb2, campaign_pb2_grpc
from server import convert, convert_campaigns, convert_locations, convert_pricing

if TYPE_CHECKING:
    from server.services import Context


class CampaignService(campaign_pb2_grpc.CampaignServiceServicer):
    def __init__(self, campaigns: Campaigns, changes: CampaignChanges) -> None:
        self._campaigns = campaigns
        self._changes = changes

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
            stock_shards=request.stock_shards if request.HasField("stock_shards") else 1,
            allotments=convert_locations.allotments(request.allotments),
            price_rules=convert_pricing.price_rules(request.price_rules),
            points_back_percent=request.points_back_percent,
            bundle_parts=[BundlePart(p.item_id, p.quantity) for p in request.bundle_parts],
            request_id=request.request_id,
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

    async def UpdateCampaign(
        self, request: campaign_pb2.UpdateCampaignRequest, context: Context
    ) -> campaign_pb2.Campaign:
        updated = await self._changes.update(
            request.campaign.id, convert_campaigns.campaign_update(request)
        )
        return convert.campaign(updated)

    async def EndCampaign(
        self, request: campaign_pb2.EndCampaignRequest, context: Context
    ) -> campaign_pb2.Campaign:
        return convert.campaign(await self._changes.end(request.campaign_id))
