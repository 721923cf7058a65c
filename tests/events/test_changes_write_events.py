"""Each change writes its event, read back through WatchEvents on a real channel: commit,
cancel, payment confirmed and expired, points, stock, sold out and reopened; a refusal none."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import field_mask_pb2

from loyalty.v1 import campaign_pb2, catalog_pb2, common_pb2, redemption_pb2
from tests.conftest import Running, StartServer
from tests.events.helpers import everything, payload
from tests.factories import ADDRESS, failure, key

PHYSICAL = common_pb2.ITEM_KIND_PHYSICAL


async def test_commit_sold_out_refusal_cancel_reopen_and_stock(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=2, points_price=300, kind=PHYSICAL)
    member, other = await api.member(points=1000), await api.member(points=1000)
    start = [e.sequence for e in await everything(server.channel)]
    after = max(start)

    redeemed = (
        await api.redeem(member.id, campaign.id, quantity=2, shipping_address=ADDRESS)
    ).redemption
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(other.id, campaign.id, shipping_address=ADDRESS)
    await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(
            redemption_id=redeemed.id, member_id=member.id, reason="changed my mind"
        )
    )
    await api.catalog.AdjustStock(
        catalog_pb2.AdjustStockRequest(
            item_id=campaign.item_id, delta=5, reason="found a box", idempotency_key=key()
        )
    )
    events = await everything(server.channel, after)

    assert failure(refused.value).reason == "SOLD_OUT"
    assert [e.type for e in events] == [
        "redemption.committed",
        "points.spent",
        "campaign.sold_out",
        "points.refunded",
        "redemption.cancelled",
        "campaign.reopened",
        "stock.adjusted",
    ]
    assert [e.sequence for e in events] == sorted(e.sequence for e in events)
    committed, spent, sold_out, refunded, cancelled, reopened, stock = events
    assert (committed.subject_kind, committed.subject_id) == ("redemption", redeemed.id)
    assert payload(committed) == {
        "redemption_id": redeemed.id,
        "member_id": member.id,
        "campaign_id": campaign.id,
        "item_id": campaign.item_id,
        "quantity": 2,
        "points_total": 600,
        "cash_total_cents": 0,
        "status": "COMMITTED",
    }
    assert committed.actor == ""  # the group commit is the service's own
    assert (spent.subject_id, payload(spent)["amount"], payload(spent)["balance_after"]) == (
        member.id,
        -600,
        400,
    )
    assert payload(sold_out) == {
        "campaign_id": campaign.id,
        "item_id": campaign.item_id,
        "units_allotted": 2,
        "units_available": 0,
    }
    assert (payload(refunded)["amount"], payload(refunded)["balance_after"]) == (600, 1000)
    assert payload(cancelled)["status"] == "CANCELLED"
    assert payload(cancelled)["previous_status"] == "COMMITTED"
    assert payload(cancelled)["reason"] == "changed my mind"
    assert cancelled.actor == "test-suite"
    assert payload(reopened)["units_available"] == 2
    assert stock.subject_id == campaign.item_id
    assert payload(stock)["delta"] == 5 and payload(stock)["reason"] == "found a box"
    assert stock.actor == "test-suite"
    # No event names the refused member.
    assert all(other.id not in e.payload_json for e in events)


async def test_points_earned_and_adjusted(server: Running) -> None:
    from loyalty.v1 import member_pb2

    api = server.api
    member = await api.member(points=250)
    await api.members.AdjustPoints(
        member_pb2.AdjustPointsRequest(
            member_id=member.id,
            delta=-50,
            reason="goodwill reversed",
            operator_id="ops-1",
            idempotency_key=key(),
        )
    )
    events = [e for e in await everything(server.channel) if e.subject_id == member.id]
    assert [e.type for e in events] == ["points.earned", "points.adjusted"]
    assert [payload(e)["amount"] for e in events] == [250, -50]
    assert [payload(e)["balance_after"] for e in events] == [250, 200]
    assert events[1].actor == "test-suite"


async def test_payment_confirmed_is_the_commit_and_a_lapsed_one_expires(
    start_server: StartServer,
) -> None:
    running = await start_server(payment_window_seconds=2.0)
    api = running.api
    campaign = await api.campaign(units=2, points_price=100, cash_price_cents=500)
    member = await api.member(points=1000)
    paid = (await api.redeem(member.id, campaign.id)).redemption
    lapsed = (await api.redeem(member.id, campaign.id)).redemption
    await api.redemptions.ConfirmPayment(
        redemption_pb2.ConfirmPaymentRequest(
            redemption_id=paid.id,
            member_id=member.id,
            payment_reference="pay-1",
            amount_cents=500,
            currency="CNY",
        )
    )
    for _ in range(80):  # the sweeper expires the lapsed one (window 2 s, sweep 0.2 s)
        await asyncio.sleep(0.1)
        got = await api.redemptions.GetRedemption(
            redemption_pb2.GetRedemptionRequest(redemption_id=lapsed.id, member_id=member.id)
        )
        if got.status == redemption_pb2.REDEMPTION_STATUS_EXPIRED:
            break
    events = await everything(running.channel)
    by_redemption = {
        (e.type, payload(e).get("redemption_id")) for e in events if e.type.startswith("red")
    }

    types = [e.type for e in events]
    # The group commit wrote only the sold-out (both units held); the confirmation wrote
    # the paid one's commit and points.spent after it.
    assert types.index("campaign.sold_out") < types.index("redemption.committed")
    assert by_redemption == {
        ("redemption.committed", paid.id),
        ("redemption.expired", lapsed.id),
    }
    expired = next(e for e in events if e.type == "redemption.expired")
    assert payload(expired)["previous_status"] == "PENDING_PAYMENT"
    assert expired.actor == ""  # the sweeper's
    assert types.index("campaign.reopened") > types.index("redemption.expired")
    assert types.count("points.spent") == 1  # the paid one's, at confirmation


async def test_an_allotment_raised_on_a_sold_out_campaign_reopens_it(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=1, points_price=100, kind=PHYSICAL)
    member = await api.member(points=1000)
    await api.catalog.AdjustStock(
        catalog_pb2.AdjustStockRequest(
            item_id=campaign.item_id, delta=5, reason="more", idempotency_key=key()
        )
    )
    await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)
    await api.campaigns.UpdateCampaign(
        campaign_pb2.UpdateCampaignRequest(
            campaign=campaign_pb2.Campaign(id=campaign.id, units_allotted=3),
            update_mask=field_mask_pb2.FieldMask(paths=["units_allotted"]),
        )
    )
    events = [e for e in await everything(server.channel) if e.type.startswith("campaign.")]
    assert [e.type for e in events] == ["campaign.sold_out", "campaign.reopened"]
    assert payload(events[1])["units_available"] == 2
    assert events[1].actor == "test-suite"
