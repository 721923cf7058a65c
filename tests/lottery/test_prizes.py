"""Stage B: a GOOD prize is delivered as a redemption of its prize campaign, which Redeem
refuses; a lottery with a physical prize asks for the address before drawing."""

from __future__ import annotations

import grpc
import pytest

from loyalty.v1 import campaign_pb2, catalog_pb2, common_pb2, redemption_pb2
from tests.conftest import Running
from tests.factories import ADDRESS, failure
from tests.flashsale.helpers import settled_audit
from tests.lottery.helpers import GOOD, NONE, create_request, draw, lottery, pg_rows, prize, stub


async def test_a_won_good_is_a_redemption_with_the_stock_ledger_moved(server: Running) -> None:
    lot = await lottery(server, stock=2, weight=1_000_000, consolation_weight=1, cost=100)
    good = lot.prizes[0]
    member = await server.api.member(points=1000)

    drawn = await draw(server, member.id, lot.id)
    redemption = await server.api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(
            redemption_id=drawn.draw.redemption_id, member_id=member.id
        )
    )
    campaign = await server.api.get_campaign(good.campaign_id)

    assert drawn.draw.prize.id == good.id and drawn.draw.redemption_id
    assert redemption.campaign_id == good.campaign_id
    assert redemption.status == redemption_pb2.REDEMPTION_STATUS_COMMITTED
    assert redemption.points_total == 0 and len(redemption.redemption_code) == 19
    assert (campaign.units_allotted, campaign.units_committed) == (2, 1)
    moved = pg_rows(
        server,
        "SELECT kind, on_hand_delta, allotted_delta FROM stock_movements WHERE redemption_id = %s",
        drawn.draw.redemption_id,
    )
    assert moved == [("redeemed", -1, -1)]
    # The cost was spent once, by the draw; the prize's redemption spent nothing.
    assert (await server.api.balance(member.id)).balance == 900
    # A retry answers the same draw and the same redemption.
    again = await draw(server, member.id, lot.id, idem=drawn.draw.idempotency_key)
    assert (again.replayed, again.draw.redemption_id) == (True, drawn.draw.redemption_id)
    # The service's own audit (ledger, stock, campaigns, Redis) finds nothing wrong.
    assert (await settled_audit(server)).ok


async def test_redeem_on_a_prize_campaign_is_refused_and_changes_nothing(server: Running) -> None:
    lot = await lottery(server, stock=3)
    member = await server.api.member(points=1000)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await server.api.redeem(member.id, lot.prizes[0].campaign_id)

    f = failure(refused.value)
    assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, "campaign_id")
    assert (await server.api.get_campaign(lot.prizes[0].campaign_id)).units_committed == 0
    assert (await server.api.balance(member.id)).balance == 1000


async def test_a_prize_campaign_is_not_offered_nor_changed_by_an_operator(
    server: Running,
) -> None:
    lot = await lottery(server, stock=3)
    campaign_id = lot.prizes[0].campaign_id
    api = server.api
    update = campaign_pb2.UpdateCampaignRequest(
        campaign=campaign_pb2.Campaign(id=campaign_id, points_price=1, units_allotted=30)
    )
    update.update_mask.paths.extend(["points_price", "units_allotted"])

    offers = await api.redemptions.ListOffers(redemption_pb2.ListOffersRequest())
    with pytest.raises(grpc.aio.AioRpcError) as offer:
        await api.redemptions.GetOffer(redemption_pb2.GetOfferRequest(campaign_id=campaign_id))
    with pytest.raises(grpc.aio.AioRpcError) as updated:
        await api.campaigns.UpdateCampaign(update)
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await api.campaigns.EndCampaign(campaign_pb2.EndCampaignRequest(campaign_id=campaign_id))

    assert campaign_id not in [o.campaign_id for o in offers.offers]
    assert offer.value.code() == grpc.StatusCode.NOT_FOUND
    for refused in (updated, ended):
        assert failure(refused.value).reason == "LOTTERY_PRIZE_CAMPAIGN"
    campaign = await api.get_campaign(campaign_id)
    assert campaign.lottery_prize
    assert (campaign.points_price, campaign.units_allotted, campaign.units_remaining) == (0, 3, 3)


async def test_a_physical_prize_needs_the_address_before_drawing(server: Running) -> None:
    item = await server.api.item(kind=common_pb2.ITEM_KIND_PHYSICAL, stock=5)
    lot = await stub(server).CreateLottery(
        create_request(
            [
                prize("Kettle", GOOD, weight=1_000_000, stock=1, item_id=item.id),
                prize("Thanks", NONE, weight=1),
            ]
        )
    )
    member = await server.api.member(points=1000)

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await draw(server, member.id, lot.id)
    won = await draw(server, member.id, lot.id, shipping_address=ADDRESS)
    redemption = await server.api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(
            redemption_id=won.draw.redemption_id, member_id=member.id
        )
    )

    assert (failure(missing.value).code, failure(missing.value).field) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "shipping_address",
    )
    assert redemption.shipping_address.city == ADDRESS.city
    assert (await server.api.balance(member.id)).balance == 900


async def test_a_prize_stock_beyond_the_item_stock_is_refused(server: Running) -> None:
    item = await server.api.item(stock=3)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub(server).CreateLottery(
            create_request(
                [prize("Mug", GOOD, weight=1, stock=4, item_id=item.id), prize("T", NONE, weight=1)]
            )
        )

    assert failure(refused.value).reason == "INSUFFICIENT_STOCK"
    assert pg_rows(server, "SELECT count(*) FROM lotteries") == [(0,)]
    got = await server.api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item.id))
    assert got.stock_on_hand == 3
    assert pg_rows(server, "SELECT count(*) FROM campaigns") == [(0,)]
