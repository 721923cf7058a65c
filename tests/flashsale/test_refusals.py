"""Business refusals: each is FAILED_PRECONDITION with its reason, and changes nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import grpc
import pytest

from loyalty.v1 import redemption_pb2
from tests.conftest import Running
from tests.factories import failure
from tests.flashsale.helpers import outcomes, settled_audit


async def test_per_member_limit_holds_under_concurrency(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=100, limit=3)
    member = await api.member(points=100_000)

    ok, refused = await outcomes(api.redeem(member.id, campaign.id) for _ in range(30))

    assert len(ok) == 3 and refused == {"LIMIT_EXCEEDED": 27}
    assert (await api.get_campaign(campaign.id)).units_committed == 3
    assert (await settled_audit(server)).ok


async def test_limit_counts_units_not_calls(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=100, limit=3)
    member = await api.member(points=100_000)
    await api.redeem(member.id, campaign.id, quantity=2)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(member.id, campaign.id, quantity=2)

    f = failure(refused.value)
    assert (f.reason, f.metadata["per_member_limit"], f.metadata["units_taken"]) == (
        "LIMIT_EXCEEDED",
        "3",
        "2",
    )


async def test_insufficient_points_releases_the_units_at_once(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=1, points_price=500)
    poor, rich = await api.member(points=499), await api.member(points=500)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(poor.id, campaign.id)
    # No sweep has run: the unit must already be back.
    after_refusal = await api.get_campaign(campaign.id)
    won = await api.redeem(rich.id, campaign.id)

    f = failure(refused.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_POINTS")
    assert (f.metadata["available"], f.metadata["required"]) == ("499", "500")
    assert (after_refusal.units_remaining, after_refusal.units_held) == (1, 0)
    assert won.redemption.quantity == 1
    poor_balance = await api.balance(poor.id)
    assert (poor_balance.balance, poor_balance.held) == (499, 0)
    assert (await settled_audit(server)).ok


async def test_concurrent_redemptions_cannot_overdraw_points(server: Running) -> None:
    api = server.api
    campaigns = [await api.campaign(units=10, points_price=300) for _ in range(4)]
    member = await api.member(points=1000)  # enough for 3 of 4

    ok, refused = await outcomes(api.redeem(member.id, c.id) for c in campaigns for _ in range(2))

    assert len(ok) == 3 and refused == {"INSUFFICIENT_POINTS": 5}
    balance = await api.balance(member.id)
    assert (balance.balance, balance.held, balance.available) == (100, 0, 100)
    assert (await settled_audit(server)).ok


async def test_a_frozen_member_cannot_redeem(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=5)
    member = await api.member(points=1000)
    async with server.app.pool.connection() as conn:
        await conn.execute(
            "UPDATE members SET frozen = true, version = version + 1 WHERE id = %s", (member.id,)
        )
    await server.app.points.members.load_into_gate(member.id)  # what a freeze does after PostgreSQL

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(member.id, campaign.id)

    assert failure(refused.value).reason == "MEMBER_FROZEN"
    after = await api.get_campaign(campaign.id)
    assert (after.units_remaining, after.units_held) == (5, 0)
    assert (await api.balance(member.id)).balance == 1000


async def test_frozen_in_postgresql_is_refused_even_if_redis_missed_it(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=5)
    member = await api.member(points=1000)
    async with server.app.pool.connection() as conn:
        await conn.execute("UPDATE members SET frozen = true WHERE id = %s", (member.id,))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(member.id, campaign.id)

    assert failure(refused.value).reason == "MEMBER_FROZEN"
    assert (await api.get_campaign(campaign.id)).units_committed == 0
    assert (await settled_audit(server)).ok


async def test_an_unknown_member_is_not_found_and_holds_nothing(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=5)

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await api.redeem(str(uuid.uuid4()), campaign.id)

    assert failure(missing.value).code == grpc.StatusCode.NOT_FOUND
    assert (await api.get_campaign(campaign.id)).units_held == 0


async def test_an_unknown_campaign_is_not_found(server: Running) -> None:
    member = await server.api.member(points=1000)

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await server.api.redeem(member.id, str(uuid.uuid4()))

    f = failure(missing.value)
    assert (f.code, f.metadata["resource"]) == (grpc.StatusCode.NOT_FOUND, "campaign")


@pytest.mark.parametrize(
    ("starts_in", "lasts"),
    # after-end: a window that closes a second after creation (one already over is refused).
    [(timedelta(minutes=5), timedelta(hours=1)), (timedelta(minutes=-1), timedelta(seconds=61))],
    ids=["before-start", "after-end"],
)
async def test_outside_the_window_the_campaign_is_not_active(
    server: Running, starts_in: timedelta, lasts: timedelta
) -> None:
    api = server.api
    campaign = await api.campaign(units=5, starts_in=starts_in, lasts=lasts)
    member = await api.member(points=1000)
    if starts_in < timedelta(0):
        await asyncio.sleep(1.2)  # until the window has closed

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(member.id, campaign.id)

    f = failure(refused.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CAMPAIGN_NOT_ACTIVE")
    assert "starts_at" in f.metadata
    assert (await api.get_campaign(campaign.id)).units_remaining == 5
    assert (await api.balance(member.id)).balance == 1000


@pytest.mark.parametrize("skew", [timedelta(hours=2), timedelta(hours=-2)], ids=["ahead", "behind"])
async def test_a_server_with_a_skewed_clock_agrees_with_the_others_about_the_window(
    server: Running, monkeypatch: pytest.MonkeyPatch, skew: timedelta
) -> None:
    """The sale window and hold deadlines are judged by Redis's clock, which every server
    process shares, not by the process's own clock."""
    api = server.api
    campaign = await api.campaign(units=5)
    member = await api.member(points=1000)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + skew.total_seconds())

    redeemed = await api.redeem(member.id, campaign.id)

    monkeypatch.setattr(time, "time", real)
    assert redeemed.redemption.status == redemption_pb2.REDEMPTION_STATUS_COMMITTED
    assert (await api.get_campaign(campaign.id)).units_committed == 1
