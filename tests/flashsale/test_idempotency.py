"""Exactly once: one key, one redemption, ever (DESIGN-NOTES invariant 4)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from loyalty.v1 import common_pb2, redemption_pb2
from tests.conftest import Running
from tests.factories import failure, key
from tests.flashsale.helpers import outcomes, settled_audit

# Cancellable after commit: no code is issued (a virtual good's code is final).
SERVICE = common_pb2.ITEM_KIND_SERVICE


async def test_a_replay_returns_the_same_redemption(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=10)
    member = await api.member(points=1000)
    k = key()

    first = await api.redeem(member.id, campaign.id, quantity=2, idem=k)
    again = await api.redeem(member.id, campaign.id, quantity=2, idem=k)

    assert again.replayed and not first.replayed
    assert again.redemption.id == first.redemption.id
    assert again.redemption.redemption_code == first.redemption.redemption_code
    assert (await api.get_campaign(campaign.id)).units_committed == 2
    assert (await api.balance(member.id)).balance == 800


async def test_the_same_key_with_another_payload_is_refused_and_changes_nothing(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(units=10)
    member = await api.member(points=1000)
    k = key()
    await api.redeem(member.id, campaign.id, quantity=1, idem=k)

    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await api.redeem(member.id, campaign.id, quantity=2, idem=k)

    f = failure(reused.value)
    assert (f.code, f.reason) == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    assert (await api.get_campaign(campaign.id)).units_committed == 1
    assert (await api.balance(member.id)).balance == 900


async def test_keys_are_scoped_to_the_member(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=10)
    a, b = await api.member(points=1000), await api.member(points=1000)
    k = key()

    ra = await api.redeem(a.id, campaign.id, idem=k)
    rb = await api.redeem(b.id, campaign.id, idem=k)

    assert ra.redemption.id != rb.redemption.id


async def test_20_concurrent_calls_with_one_key_make_one_redemption(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=10)
    member = await api.member(points=1000)
    k = key()

    ok, refused = await outcomes(api.redeem(member.id, campaign.id, idem=k) for _ in range(20))

    assert not refused
    assert len({r.redemption.id for r in ok}) == 1
    assert sum(not r.replayed for r in ok) == 1
    assert (await api.get_campaign(campaign.id)).units_committed == 1
    assert (await api.balance(member.id)).balance == 900
    assert (await settled_audit(server)).ok


async def test_concurrent_calls_with_one_key_across_two_servers_make_one_redemption(
    start_server: object,
) -> None:
    first = await start_server()  # type: ignore[operator]
    second = await start_server()  # type: ignore[operator]
    campaign = await first.api.campaign(units=10)
    member = await first.api.member(points=1000)
    k = key()

    calls = [
        s.api.redeem(member.id, campaign.id, idem=k) for s in (first, second) for _ in range(10)
    ]
    ok, refused = await outcomes(calls)

    assert not refused
    assert len({r.redemption.id for r in ok}) == 1
    assert (await first.api.get_campaign(campaign.id)).units_committed == 1
    assert (await settled_audit(first)).ok


async def test_a_refusal_is_replayed_as_the_same_refusal(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=1, kind=SERVICE)
    winner, loser = await api.member(points=1000), await api.member(points=1000)
    k = key()
    await api.redeem(winner.id, campaign.id)
    with pytest.raises(grpc.aio.AioRpcError):
        await api.redeem(loser.id, campaign.id, idem=k)
    # Stock comes back, but the key already has its outcome.
    redemption_id = (
        (
            await api.redemptions.ListRedemptions(
                redemption_pb2.ListRedemptionsRequest(member_id=winner.id)
            )
        )
        .redemptions[0]
        .id
    )
    await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(redemption_id=redemption_id, member_id=winner.id)
    )

    with pytest.raises(grpc.aio.AioRpcError) as again:
        await api.redeem(loser.id, campaign.id, idem=k)

    assert failure(again.value).reason == "SOLD_OUT"
    assert (await api.redeem(loser.id, campaign.id)).redemption.quantity == 1


async def test_a_replay_after_the_sale_sold_out_still_returns_the_redemption(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(units=1)
    member = await api.member(points=1000)
    k = key()
    first = await api.redeem(member.id, campaign.id, idem=k)

    again = await asyncio.wait_for(api.redeem(member.id, campaign.id, idem=k), 5)

    assert again.redemption.id == first.redemption.id and again.replayed


async def test_a_key_refused_on_one_campaign_cannot_redeem_on_another(server: Running) -> None:
    api = server.api
    sold_out, in_stock = await api.campaign(units=1), await api.campaign(units=5)
    member, other = await api.member(points=1000), await api.member(points=1000)
    await api.redeem(other.id, sold_out.id)

    with pytest.raises(grpc.aio.AioRpcError) as first:
        await api.redeem(member.id, sold_out.id, idem="K")
    with pytest.raises(grpc.aio.AioRpcError) as second:
        await api.redeem(member.id, in_stock.id, idem="K")

    assert failure(first.value).reason == "SOLD_OUT"
    f = failure(second.value)
    assert (f.code, f.reason) == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    assert (await api.get_campaign(in_stock.id)).units_remaining == 5
    assert (await api.balance(member.id)).available == 1000
    # The key still answers its own request the same way.
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await api.redeem(member.id, sold_out.id, idem="K")
    assert failure(again.value).reason == "SOLD_OUT"


async def test_a_key_redeemed_on_one_campaign_is_reused_on_a_sold_out_other(
    server: Running,
) -> None:
    api = server.api
    in_stock, sold_out = await api.campaign(units=5), await api.campaign(units=1)
    member, other = await api.member(points=1000), await api.member(points=1000)
    await api.redeem(other.id, sold_out.id)
    redeemed = await api.redeem(member.id, in_stock.id, idem="K")

    with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
        await api.redeem(member.id, sold_out.id, idem="K")

    assert failure(elsewhere.value).reason == "IDEMPOTENCY_KEY_REUSED"
    replay = await api.redeem(member.id, in_stock.id, idem="K")
    assert replay.replayed and replay.redemption.id == redeemed.redemption.id


async def test_one_key_sent_to_two_campaigns_at_once_redeems_once(server: Running) -> None:
    api = server.api
    first, second = await api.campaign(units=5), await api.campaign(units=5)
    member = await api.member(points=10_000)

    ok, refused = await outcomes(
        api.redeem(member.id, campaign.id, idem="K") for campaign in [first, second] * 10
    )

    assert len({r.redemption.id for r in ok}) == 1
    assert refused == {"IDEMPOTENCY_KEY_REUSED": 20 - len(ok)}
    async with server.app.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT count(*) FROM redemptions WHERE member_id = %s", (member.id,)
            )
        ).fetchone()
    assert rows == (1,)
    held = [(await api.get_campaign(c.id)).units_held for c in (first, second)]
    assert held == [0, 0]
