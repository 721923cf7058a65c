"""Reading redemptions and campaigns: pages, filters, single reads."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc
import pytest

from loyalty.v1 import campaign_pb2, redemption_pb2
from tests.factories import Api, failure


async def test_list_redemptions_pages_newest_first(api: Api) -> None:
    campaign = await api.campaign(units=20, limit=20)
    member, other = await api.member(points=10_000), await api.member(points=10_000)
    made = [(await api.redeem(member.id, campaign.id)).redemption.id for _ in range(5)]
    await api.redeem(other.id, campaign.id)

    seen, token = [], ""
    while True:
        page = await api.redemptions.ListRedemptions(
            redemption_pb2.ListRedemptionsRequest(
                member_id=member.id, page_size=2, page_token=token
            )
        )
        seen += [r.id for r in page.redemptions]
        token = page.next_page_token
        if not token:
            break

    assert seen == list(reversed(made))


async def test_get_redemption(api: Api) -> None:
    campaign = await api.campaign(units=2)
    member = await api.member(points=1000)
    made = (await api.redeem(member.id, campaign.id)).redemption

    fetched = await api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(redemption_id=made.id, member_id=made.member_id)
    )
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await api.redemptions.GetRedemption(
            redemption_pb2.GetRedemptionRequest(
                redemption_id=str(uuid.uuid4()), member_id=made.member_id
            )
        )

    # GetRedemption adds the history (Redeem's answer leaves it out): here, the commit alone.
    assert [(h.status, h.time) for h in fetched.history] == [
        (redemption_pb2.REDEMPTION_STATUS_COMMITTED, made.create_time)
    ]
    fetched.ClearField("history")
    assert fetched == made
    assert failure(missing.value).code == grpc.StatusCode.NOT_FOUND


async def test_list_campaigns_active_only_and_pages(api: Api) -> None:
    active = [await api.campaign(units=1) for _ in range(3)]
    await api.campaign(units=1, starts_in=timedelta(hours=1))

    everything = await api.campaigns.ListCampaigns(campaign_pb2.ListCampaignsRequest())
    first = await api.campaigns.ListCampaigns(
        campaign_pb2.ListCampaignsRequest(active_only=True, page_size=2)
    )
    rest = await api.campaigns.ListCampaigns(
        campaign_pb2.ListCampaignsRequest(
            active_only=True, page_size=2, page_token=first.next_page_token
        )
    )

    assert len(everything.campaigns) == 4 and not everything.next_page_token
    got = [c.id for c in first.campaigns] + [c.id for c in rest.campaigns]
    assert sorted(got) == sorted(c.id for c in active) and not rest.next_page_token
