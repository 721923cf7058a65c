"""Redis holds only what the gate needs now (DESIGN-NOTES invariant 9): refusals leave
within the retry window, redemptions stay as long as their replays matter, and no key or
field is left behind by a request that came to nothing."""

from __future__ import annotations

import uuid

import grpc
import pytest

from flashsale.gate import CampaignKeys, hold_id
from loyalty.v1 import common_pb2, redemption_pb2
from points.gate import claim_key, member_keys
from tests.conftest import StartServer
from tests.factories import failure
from tests.redis_helpers import scan_all


async def test_refusals_are_remembered_for_the_retry_window_only(
    start_server: StartServer,
) -> None:
    server = await start_server(refusal_ttl_seconds=120, idempotency_ttl_seconds=86_400)
    api, client = server.api, server.app.redis
    campaign = await api.campaign(units=1)
    buyer, late = await api.member(points=1000), await api.member(points=1000)
    await api.redeem(buyer.id, campaign.id, idem="won")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(late.id, campaign.id, idem="lost")
    assert failure(refused.value).reason == "SOLD_OUT"

    keys = CampaignKeys(campaign.id)
    refused_ttl = await client.ttl(keys.record(hold_id(late.id, "lost")))
    done_ttl = await client.ttl(keys.record(hold_id(buyer.id, "won")))
    claim_ttl = await client.ttl(claim_key(late.id, "lost"))

    assert 0 < refused_ttl <= 120 and 0 < claim_ttl <= 120
    assert 120 < done_ttl <= 86_400


async def test_a_request_that_came_to_nothing_leaves_no_zero_field(
    start_server: StartServer,
) -> None:
    """An unknown (well-formed) member id holds units, is refused NOT_FOUND, and its units go
    back: its per-member in-flight field goes with them, as every member's does at zero."""
    server = await start_server()
    api, client = server.api, server.app.redis
    campaign = await api.campaign(units=5)
    member = await api.member(points=1000)
    await api.redeem(member.id, campaign.id)  # held, then committed: in flight back to 0
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await api.redeem(str(uuid.uuid4()), campaign.id)
    assert failure(unknown.value).code == grpc.StatusCode.NOT_FOUND

    assert await client.hgetall(CampaignKeys(campaign.id).mheld) == {}


async def test_every_key_a_sale_leaves_in_redis_has_an_end(start_server: StartServer) -> None:
    """After a sale with redemptions, refusals, a cancel and a points + cash payment, every
    key in Redis expires: campaign keys a retention after the sale ends, member keys after
    they go unused, records after their window."""
    server = await start_server(campaign_key_retention_seconds=600, member_key_idle_seconds=7200)
    api, client = server.api, server.app.redis
    sale = await api.campaign(units=3, kind=common_pb2.ITEM_KIND_SERVICE)
    cash = await api.campaign(units=3, points_price=100, cash_price_cents=500)
    members = [await api.member(points=1000) for _ in range(4)]
    for m in members[:3]:
        await api.redeem(m.id, sale.id)
    with pytest.raises(grpc.aio.AioRpcError):
        await api.redeem(members[3].id, sale.id)  # sold out: a refused record
    first = (await api.redeem(members[0].id, cash.id)).redemption
    await api.redemptions.CancelRedemption(  # a points + cash one, before its payment
        redemption_pb2.CancelRedemptionRequest(redemption_id=first.id, member_id=members[0].id)
    )
    await server.app.sweeper.sweep_once()

    endless = [k for k in await scan_all(client) if await client.ttl(k) == -1]
    assert endless == []
    ends = (await api.get_campaign(sale.id)).ends_at.ToDatetime().timestamp()
    state_ends = await client.pexpiretime(CampaignKeys(sale.id).state) / 1000
    assert abs(state_ends - (ends + 600)) < 2
    assert 0 < await client.ttl(member_keys(members[0].id)[0]) <= 7200
