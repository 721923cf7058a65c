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
