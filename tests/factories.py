"""Test helpers: stubs on one channel, factories that create data through the API, and a
way to read a refusal's status and ErrorInfo reason."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

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

ADDRESS = common_pb2.ShippingAddress(
    recipient="Li Wei",
    line1="1 Nanjing Road",
    city="Shanghai",
    postal_code="200001",
    country_code="CN",
)


def ts(moment: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(moment)
    return t


def key() -> str:
    return "k-" + uuid.uuid4().hex


@dataclass(frozen=True)
class Failure:
    code: grpc.StatusCode
    reason: str
    message: str
    metadata: dict[str, str]
    field: str
    retry_delay_s: float = 0.0  # google.rpc.RetryInfo, when the status carries one


def failure(error: grpc.aio.AioRpcError) -> Failure:
    """The status code, ErrorInfo reason and BadRequest field of a failed call."""
    reason, metadata, field, retry = "", {}, "", 0.0
    for key_, value in error.trailing_metadata() or ():
        if key_ != rpc_status.GRPC_DETAILS_METADATA_KEY:
            continue
        rich = status_pb2.Status.FromString(value)
        for detail in rich.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                field = bad.field_violations[0].field
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info_ = error_details_pb2.RetryInfo()
                detail.Unpack(info_)
                retry = info_.retry_delay.ToTimedelta().total_seconds()
    return Failure(error.code(), reason, error.details() or "", metadata, field, retry)


class Api:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        self.campaigns = campaign_pb2_grpc.CampaignServiceStub(channel)
        self.members = member_pb2_grpc.MemberServiceStub(channel)
        self.redemptions = redemption_pb2_grpc.RedemptionServiceStub(channel)

    async def item(
        self,
        *,
        kind: common_pb2.ItemKind.ValueType = common_pb2.ITEM_KIND_VIRTUAL,
        stock: int = 1000,
    ) -> catalog_pb2.Item:
        return await self.catalog.CreateItem(
            catalog_pb2.CreateItemRequest(
                sku="sku-" + uuid.uuid4().hex[:12], name="Lucky bag", kind=kind, initial_stock=stock
            )
        )

    async def member(self, points: int = 0) -> member_pb2.Member:
        member = await self.members.CreateMember(member_pb2.CreateMemberRequest(display_name="Ann"))
        if points:
            await self.earn(member.id, points)
        return member

    async def earn(self, member_id: str, points: int) -> member_pb2.EarnPointsResponse:
        return await self.members.EarnPoints(
            member_pb2.EarnPointsRequest(
                member_id=member_id, points=points, reason="test", idempotency_key=key()
            )
        )

    async def campaign(
        self,
        *,
        units: int = 10,
        points_price: int = 100,
        cash_price_cents: int = 0,
        limit: int = 5,
        kind: common_pb2.ItemKind.ValueType = common_pb2.ITEM_KIND_VIRTUAL,
        starts_in: timedelta = timedelta(seconds=-60),
        lasts: timedelta = timedelta(hours=1),
        item_id: str | None = None,
        stock_shards: int | None = None,
    ) -> campaign_pb2.Campaign:
        if item_id is None:
            item_id = (await self.item(kind=kind, stock=max(units, 1))).id
        starts = datetime.now(UTC) + starts_in
        return await self.campaigns.CreateCampaign(
            campaign_pb2.CreateCampaignRequest(
                item_id=item_id,
                name="Holiday surge",
                units_allotted=units,
                points_price=points_price,
                cash_price_cents=cash_price_cents,
                per_member_limit=limit,
                starts_at=ts(starts),
                ends_at=ts(starts + lasts),
                stock_shards=stock_shards,
            )
        )

    async def redeem(
        self,
        member_id: str,
        campaign_id: str,
        *,
        quantity: int = 1,
        idem: str | None = None,
        **extra: Any,
    ) -> redemption_pb2.RedeemResponse:
        return await self.redemptions.Redeem(
            redemption_pb2.RedeemRequest(
                member_id=member_id,
                campaign_id=campaign_id,
                quantity=quantity,
                idempotency_key=idem or key(),
                **extra,
            )
        )

    async def balance(self, member_id: str) -> common_pb2.Balance:
        return await self.members.GetBalance(
            member_pb2.MemberServiceGetBalanceRequest(member_id=member_id)
        )

    async def get_campaign(self, campaign_id: str) -> campaign_pb2.Campaign:
        return await self.campaigns.GetCampaign(
            campaign_pb2.GetCampaignRequest(campaign_id=campaign_id)
        )
