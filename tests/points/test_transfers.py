"""Beneficiaries and transfers: only to designated members, atomic, idempotent, and the
transferred points keep their expiry dates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from loyalty.v1 import member_pb2
from tests.conftest import Running, StartServer
from tests.factories import failure
from tests.flashsale.helpers import settled_audit
from tests.points.helpers import (
    assert_ledger_holds,
    earn,
    lots_of,
    program,
    set_lot_expiry,
    start_with_program,
)


def beneficiary(member_id: str, other: str) -> member_pb2.AddBeneficiaryRequest:
    return member_pb2.AddBeneficiaryRequest(member_id=member_id, beneficiary_id=other)


def transfer(
    sender: str, receiver: str, points: int, idem: str = "t-1"
) -> member_pb2.TransferPointsRequest:
    return member_pb2.TransferPointsRequest(
        from_member_id=sender, to_member_id=receiver, points=points, idempotency_key=idem
    )


async def test_beneficiaries_add_list_remove(start_server: StartServer) -> None:
    running = await start_with_program(start_server, program(max_beneficiaries=2))
    api = running.api
    member = await api.member()
    a, b, c = await api.member(), await api.member(), await api.member()

    await api.members.AddBeneficiary(beneficiary(member.id, a.id))
    twice = await api.members.AddBeneficiary(beneficiary(member.id, a.id))
    full = await api.members.AddBeneficiary(beneficiary(member.id, b.id))
    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await api.members.AddBeneficiary(beneficiary(member.id, c.id))
    removed = await api.members.RemoveBeneficiary(
        member_pb2.RemoveBeneficiaryRequest(member_id=member.id, beneficiary_id=a.id)
    )
    listed = await api.members.ListBeneficiaries(
        member_pb2.ListBeneficiariesRequest(member_id=member.id)
    )

    assert [x.member_id for x in twice.beneficiaries] == [a.id]
    assert {x.member_id for x in full.beneficiaries} == {a.id, b.id}
    assert failure(too_many.value).reason == "TOO_MANY_BENEFICIARIES"
    assert failure(too_many.value).metadata["max_beneficiaries"] == "2"
    assert (
        [x.member_id for x in removed.beneficiaries]
        == [b.id]
        == [x.member_id for x in listed.beneficiaries]
    )
    assert listed.beneficiaries[0].display_name == "Ann"


async def test_beneficiary_errors(server: Running) -> None:
    api = server.api
    member = await api.member()
    for request, code, field in (
        (beneficiary(member.id, member.id), grpc.StatusCode.INVALID_ARGUMENT, "beneficiary_id"),
        (beneficiary(member.id, "x"), grpc.StatusCode.INVALID_ARGUMENT, "beneficiary_id"),
        (beneficiary(member.id, str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND, ""),
        (beneficiary(str(uuid.uuid4()), member.id), grpc.StatusCode.NOT_FOUND, ""),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await api.members.AddBeneficiary(request)
        assert (failure(bad.value).code, failure(bad.value).field) == (code, field)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await api.members.ListBeneficiaries(
            member_pb2.ListBeneficiariesRequest(member_id=str(uuid.uuid4()))
        )
    assert failure(missing.value).code == grpc.StatusCode.NOT_FOUND


async def test_a_transfer_moves_lots_with_their_expiry(server: Running) -> None:
    api = server.api
    sender, receiver = await api.member(), await api.member(points=5)
    soon, late = await earn(server, sender.id, 100), await earn(server, sender.id, 300)
    expiry = (datetime.now(UTC) + timedelta(days=20)).replace(microsecond=0)
    await set_lot_expiry(server, sender.id, f"earn:{soon}", expiry)
    await api.members.AddBeneficiary(beneficiary(sender.id, receiver.id))

    moved = await api.members.TransferPoints(transfer(sender.id, receiver.id, 150))
    replay = await api.members.TransferPoints(transfer(sender.id, receiver.id, 150))
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await api.members.TransferPoints(transfer(sender.id, receiver.id, 151))

    assert (moved.from_balance.balance, moved.to_balance.balance) == (250, 155)
    assert replay.replayed and replay.transfer_id == moved.transfer_id
    assert replay.from_balance.balance == 250
    assert failure(reused.value).reason == "IDEMPOTENCY_KEY_REUSED"
    received = [lot for lot in await lots_of(server, receiver.id) if lot[0].startswith("transfer:")]
    assert sorted((amount, expires) for _, amount, _, expires in received) == sorted(
        [
            (100, expiry),
            (50, next(e for r, _, _, e in await lots_of(server, sender.id) if r == f"earn:{late}")),
        ]
    )
    # Transferred points are not earned: no lifetime or qualifying credit for the receiver.
    assert (moved.to_balance.lifetime_earned, moved.to_balance.qualifying_points) == (5, 5)
    statement = await api.members.ListLedgerEntries(
        member_pb2.ListLedgerEntriesRequest(member_id=receiver.id, page_size=1)
    )
    assert statement.entries[0].counterparty_member_id == sender.id
    assert statement.entries[0].kind == member_pb2.LEDGER_ENTRY_KIND_TRANSFER
    await assert_ledger_holds(server, sender.id)
    await assert_ledger_holds(server, receiver.id)


async def test_transfer_refusals(server: Running) -> None:
    api = server.api
    sender, friend, stranger = await api.member(points=100), await api.member(), await api.member()
    await api.members.AddBeneficiary(beneficiary(sender.id, friend.id))
    cases = [
        (transfer(sender.id, stranger.id, 10, "a"), "NOT_A_BENEFICIARY", ""),
        (transfer(sender.id, friend.id, 101, "b"), "INSUFFICIENT_POINTS", ""),
        (transfer(sender.id, sender.id, 10, "c"), "INVALID_ARGUMENT", "to_member_id"),
        (transfer(sender.id, friend.id, 0, "d"), "INVALID_ARGUMENT", "points"),
        (transfer(sender.id, friend.id, 10, ""), "INVALID_ARGUMENT", "idempotency_key"),
        (transfer("x", friend.id, 10, "e"), "INVALID_ARGUMENT", "from_member_id"),
        (transfer(sender.id, str(uuid.uuid4()), 10, "f"), "NOT_FOUND", ""),
    ]
    for request, reason, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.members.TransferPoints(request)
        assert (failure(refused.value).reason, failure(refused.value).field) == (reason, field)
    assert (await assert_ledger_holds(server, sender.id)).balance == 100


async def test_a_transfer_repays_the_receivers_debt_first(server: Running) -> None:
    api = server.api
    sender, receiver = await api.member(points=500), await api.member()
    await api.members.EarnForPurchase(
        member_pb2.EarnForPurchaseRequest(member_id=receiver.id, amount_cents=20_000, event_id="o")
    )
    campaign = await api.campaign(points_price=200)
    await api.redeem(receiver.id, campaign.id)
    await api.members.ReversePurchase(
        member_pb2.ReversePurchaseRequest(
            member_id=receiver.id, purchase_event_id="o", event_id="r"
        )
    )
    await api.members.AddBeneficiary(beneficiary(sender.id, receiver.id))

    moved = await api.members.TransferPoints(transfer(sender.id, receiver.id, 300))

    assert (moved.to_balance.balance, moved.to_balance.debt) == (100, 0)
    await assert_ledger_holds(server, receiver.id)
    assert (await settled_audit(server)).ok
