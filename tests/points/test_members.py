"""Members and earning through MemberService."""

from __future__ import annotations

import uuid

import grpc
import pytest

from loyalty.v1 import member_pb2, redemption_pb2
from tests.factories import Api, failure


def earn(member_id: str, points: int, key: str = "e-1") -> member_pb2.EarnPointsRequest:
    return member_pb2.EarnPointsRequest(
        member_id=member_id, points=points, reason="purchase", idempotency_key=key
    )


async def test_create_get_and_earn(api: Api) -> None:
    created = await api.members.CreateMember(
        member_pb2.CreateMemberRequest(display_name="Bo", external_ref="mall-77")
    )

    first = await api.members.EarnPoints(earn(created.id, 250))
    replay = await api.members.EarnPoints(earn(created.id, 250))
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await api.members.EarnPoints(earn(created.id, 300))
    fetched = await api.members.GetMember(member_pb2.GetMemberRequest(member_id=created.id))

    assert fetched == created and fetched.external_ref == "mall-77" and not fetched.frozen
    assert first.balance.balance == 250 and first.points == 250 and not first.replayed
    assert replay.replayed and replay.ledger_entry_id == first.ledger_entry_id
    assert replay.balance.balance == 250 and replay.points == 250
    assert failure(reused.value).reason == "IDEMPOTENCY_KEY_REUSED"


async def test_the_gateway_reads_the_same_balance(api: Api) -> None:
    member = await api.member(points=40)
    from_gateway = await api.redemptions.GetBalance(
        redemption_pb2.RedemptionServiceGetBalanceRequest(member_id=member.id)
    )
    assert from_gateway == await api.balance(member.id)
    assert (from_gateway.balance, from_gateway.available) == (40, 40)


async def test_duplicate_external_ref_already_exists(api: Api) -> None:
    request = member_pb2.CreateMemberRequest(display_name="Cy", external_ref="dup")
    await api.members.CreateMember(request)
    with pytest.raises(grpc.aio.AioRpcError) as dup:
        await api.members.CreateMember(request)
    assert failure(dup.value).code == grpc.StatusCode.ALREADY_EXISTS


async def test_unknown_member_is_not_found_everywhere(api: Api) -> None:
    unknown = str(uuid.uuid4())
    for call in (
        api.members.GetMember(member_pb2.GetMemberRequest(member_id=unknown)),
        api.members.GetBalance(member_pb2.MemberServiceGetBalanceRequest(member_id=unknown)),
        api.members.EarnPoints(earn(unknown, 5)),
        api.redemptions.ListRedemptions(redemption_pb2.ListRedemptionsRequest(member_id=unknown)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await call
        assert failure(missing.value).code == grpc.StatusCode.NOT_FOUND


async def test_concurrent_earns_with_one_key_credit_once(api: Api) -> None:
    import asyncio

    member = await api.member()
    results = await asyncio.gather(
        *(api.members.EarnPoints(earn(member.id, 10, "same")) for _ in range(10))
    )
    assert len({r.ledger_entry_id for r in results}) == 1
    assert (await api.balance(member.id)).balance == 10
