"""Freezes and the redemption threshold, in the Redis gate and in PostgreSQL."""

from __future__ import annotations

import uuid

import grpc
import pytest

from loyalty.v1 import member_pb2
from points import PointsLedger
from points.gate import member_keys
from tests.conftest import Running, StartServer
from tests.factories import failure, key
from tests.flashsale.helpers import settled_audit
from tests.points.helpers import assert_ledger_holds, earn, program, start_with_program


def freeze(member_id: str, reason: str = "fraud review") -> member_pb2.FreezeMemberRequest:
    return member_pb2.FreezeMemberRequest(member_id=member_id, reason=reason, operator_id="op-7")


async def test_a_frozen_member_cannot_redeem_or_transfer_from_the_moment_freeze_returns(
    server: Running,
) -> None:
    api = server.api
    member, friend = await api.member(points=1000), await api.member()
    await api.members.AddBeneficiary(
        member_pb2.AddBeneficiaryRequest(member_id=member.id, beneficiary_id=friend.id)
    )
    campaign = await api.campaign(points_price=100)

    frozen = await api.members.FreezeMember(freeze(member.id))
    refusals = []
    for call in (
        api.redeem(member.id, campaign.id),
        api.members.TransferPoints(
            member_pb2.TransferPointsRequest(
                from_member_id=member.id, to_member_id=friend.id, points=10, idempotency_key=key()
            )
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        refusals.append(failure(refused.value).reason)
    again = await api.members.FreezeMember(freeze(member.id, "second freeze"))
    thawed = await api.members.UnfreezeMember(
        member_pb2.UnfreezeMemberRequest(member_id=member.id, reason="cleared", operator_id="op-7")
    )
    redeemed = await api.redeem(member.id, campaign.id)

    assert frozen.frozen and frozen.frozen_reason == "fraud review"
    assert again.frozen_reason == "fraud review"  # freezing a frozen member changes nothing
    assert refusals == ["MEMBER_FROZEN", "MEMBER_FROZEN"]
    assert not thawed.frozen and thawed.frozen_reason == ""
    assert redeemed.redemption.points_total == 100
    assert (await api.balance(member.id)).frozen is False
    await assert_ledger_holds(server, member.id)
    assert (await settled_audit(server)).ok


async def test_freeze_needs_a_reason_and_a_member(server: Running) -> None:
    member = await server.api.member()
    for request, code, field in (
        (freeze(member.id, reason=""), grpc.StatusCode.INVALID_ARGUMENT, "reason"),
        (freeze("x"), grpc.StatusCode.INVALID_ARGUMENT, "member_id"),
        (freeze(str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND, ""),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await server.api.members.FreezeMember(request)
        assert (failure(bad.value).code, failure(bad.value).field) == (code, field)


async def test_below_the_redemption_threshold_redeem_is_refused(start_server: StartServer) -> None:
    running = await start_with_program(start_server, program(redemption_threshold=1000))
    api = running.api
    member = await api.member()
    await earn(running, member.id, 999)
    campaign = await api.campaign(points_price=10)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(member.id, campaign.id)
    below = await api.balance(member.id)
    await earn(running, member.id, 1)
    redeemed = await api.redeem(member.id, campaign.id)

    assert failure(refused.value).code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure(refused.value).reason == "BELOW_REDEMPTION_THRESHOLD"
    assert not below.redemption_eligible and below.lifetime_earned == 999
    assert redeemed.redemption.points_total == 10
    assert (await api.balance(member.id)).redemption_eligible
    counted = running.app.metrics.redemptions.labels("below_threshold")._value.get()
    assert counted == 1
    assert (await settled_audit(running)).ok


async def test_threshold_holds_in_postgresql_when_redis_says_eligible(
    start_server: StartServer,
) -> None:
    running = await start_with_program(start_server, program(redemption_threshold=500))
    api = running.api
    member = await api.member(points=100)
    campaign = await api.campaign(points_price=10)
    await running.app.redis.hset(member_keys(member.id)[0], "eligible", 1)  # a lying mirror

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(member.id, campaign.id)

    assert failure(refused.value).reason == "BELOW_REDEMPTION_THRESHOLD"
    assert (await running.app.redis.hget(member_keys(member.id)[0], "eligible")) == b"1"


async def test_a_new_threshold_reaches_every_member(start_server: StartServer) -> None:
    running = await start_server()
    api = running.api
    rich, poor = await api.member(points=800), await api.member(points=100)
    campaign = await api.campaign(points_price=10)
    # The same stores under a program with a higher threshold, as after a restart with a new
    # SURGE_REDEMPTION_THRESHOLD.
    raised = PointsLedger(
        running.app.pool, running.app.points_gate, program=program(redemption_threshold=500)
    )

    changed = await raised.members.reconcile_eligibility()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(poor.id, campaign.id)
    await api.redeem(rich.id, campaign.id)

    assert changed == 1
    assert failure(refused.value).reason == "BELOW_REDEMPTION_THRESHOLD"
    ledger = await assert_ledger_holds(running, poor.id)
    assert ledger.redis_eligible == 0
