"""Manual adjustments, and purchase reversals that turn a shortfall into debt."""

from __future__ import annotations

import uuid

import grpc
import pytest

from loyalty.v1 import member_pb2
from tests.conftest import Running
from tests.factories import failure, key
from tests.flashsale.helpers import settled_audit
from tests.points.helpers import assert_ledger_holds, earn


def adjust(
    member_id: str, delta: int, idem: str = "adj-1", **kw: str
) -> member_pb2.AdjustPointsRequest:
    fields = {"reason": "goodwill", "operator_id": "op-1", **kw}
    return member_pb2.AdjustPointsRequest(
        member_id=member_id, delta=delta, idempotency_key=idem, **fields
    )


def purchase(member_id: str, cents: int, event: str) -> member_pb2.EarnForPurchaseRequest:
    return member_pb2.EarnForPurchaseRequest(
        member_id=member_id, amount_cents=cents, event_id=event
    )


def reverse(
    member_id: str, event: str, cents: int = 0, refund: str = "refund-1"
) -> member_pb2.ReversePurchaseRequest:
    return member_pb2.ReversePurchaseRequest(
        member_id=member_id, purchase_event_id=event, amount_cents=cents, event_id=refund
    )


async def test_adjustments_up_and_down_with_operator_and_reason(server: Running) -> None:
    api = server.api
    member = await api.member(points=100)

    up = await api.members.AdjustPoints(adjust(member.id, 50, "a-1"))
    replay = await api.members.AdjustPoints(adjust(member.id, 50, "a-1"))
    down = await api.members.AdjustPoints(adjust(member.id, -120, "a-2", reason="clawback"))
    with pytest.raises(grpc.aio.AioRpcError) as short:
        await api.members.AdjustPoints(adjust(member.id, -31, "a-3"))
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await api.members.AdjustPoints(adjust(member.id, 51, "a-1"))
    statement = await api.members.ListLedgerEntries(
        member_pb2.ListLedgerEntriesRequest(
            member_id=member.id, kinds=[member_pb2.LEDGER_ENTRY_KIND_ADJUST]
        )
    )

    assert (up.balance.balance, replay.replayed, replay.ledger_entry_id) == (
        150,
        True,
        up.ledger_entry_id,
    )
    assert down.balance.balance == 30
    assert failure(short.value).reason == "INSUFFICIENT_POINTS"
    assert failure(short.value).metadata == {"available": "30", "required": "31"}
    assert failure(reused.value).reason == "IDEMPOTENCY_KEY_REUSED"
    assert [(e.amount, e.reason, e.operator_id) for e in statement.entries] == [
        (-120, "clawback", "op-1"),
        (50, "goodwill", "op-1"),
    ]
    # Adjustments are not earnings: no lifetime or qualifying credit.
    assert (down.balance.lifetime_earned, down.balance.qualifying_points) == (100, 100)
    await assert_ledger_holds(server, member.id)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"delta": 0}, "delta"),
        ({"reason": ""}, "reason"),
        ({"operator_id": ""}, "operator_id"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"member_id": "nope"}, "member_id"),
    ],
)
async def test_bad_adjustments_name_the_field(
    server: Running, changes: dict[str, object], field: str
) -> None:
    member = await server.api.member()
    request = adjust(member.id, 10)
    for name, value in changes.items():
        setattr(request, name, value)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await server.api.members.AdjustPoints(request)
    assert (failure(bad.value).code, failure(bad.value).field) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        field,
    )


async def test_a_reversal_takes_back_what_the_purchase_earned(server: Running) -> None:
    api = server.api
    member = await api.member()
    await earn(server, member.id, 40)
    earned = await api.members.EarnForPurchase(purchase(member.id, 12_345, "order-1"))

    reversed_ = await api.members.ReversePurchase(reverse(member.id, "order-1"))
    replay = await api.members.ReversePurchase(reverse(member.id, "order-1"))
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await api.members.ReversePurchase(reverse(member.id, "order-1", refund="refund-2"))

    assert earned.points == 123  # 123.45 yuan x 1 point, rounded down
    assert (reversed_.points_reversed, reversed_.points_taken, reversed_.debt_added) == (
        123,
        123,
        0,
    )
    assert (reversed_.balance.balance, reversed_.balance.lifetime_earned) == (40, 40)
    assert replay.replayed and replay.ledger_entry_id == reversed_.ledger_entry_id
    assert failure(again.value).reason == "PURCHASE_FULLY_REVERSED"
    await assert_ledger_holds(server, member.id)


async def test_partial_reversals_round_cumulatively(server: Running) -> None:
    api = server.api
    member = await api.member()
    await api.members.EarnForPurchase(purchase(member.id, 1_000, "o"))  # 10 points

    parts = []
    for i, cents in enumerate((333, 333, 334)):
        done = await api.members.ReversePurchase(reverse(member.id, "o", cents, f"r-{i}"))
        parts.append(done.points_reversed)
    with pytest.raises(grpc.aio.AioRpcError) as too_much:
        await api.members.ReversePurchase(reverse(member.id, "o", 1, "r-9"))

    assert parts == [3, 3, 4]  # floor(10 x 333/1000), floor(10 x 666/1000) - 3, the rest
    assert failure(too_much.value).reason == "PURCHASE_FULLY_REVERSED"
    await assert_ledger_holds(server, member.id)


async def test_spent_points_become_debt_that_the_next_earnings_repay(server: Running) -> None:
    api = server.api
    member = await api.member()
    await api.members.EarnForPurchase(purchase(member.id, 50_000, "tv"))  # 500 points
    campaign = await api.campaign(points_price=450)
    await api.redeem(member.id, campaign.id)

    reversed_ = await api.members.ReversePurchase(reverse(member.id, "tv"))
    in_debt = await assert_ledger_holds(server, member.id)
    repaid = await api.members.EarnPoints(
        member_pb2.EarnPointsRequest(
            member_id=member.id, points=300, reason="bonus", idempotency_key=key()
        )
    )

    assert (reversed_.points_taken, reversed_.debt_added) == (50, 450)
    assert (in_debt.balance, in_debt.debt) == (0, 450)
    assert (repaid.balance.balance, repaid.balance.debt) == (0, 150)
    await api.members.AdjustPoints(adjust(member.id, 200, "a-1"))
    after = await assert_ledger_holds(server, member.id)
    assert (after.balance, after.debt) == (50, 0)
    assert (await settled_audit(server)).ok


async def test_reversal_errors(server: Running) -> None:
    api = server.api
    member = await api.member()
    await api.members.EarnForPurchase(purchase(member.id, 1_000, "o"))
    await api.members.ReversePurchase(reverse(member.id, "o", 100, "r-1"))
    cases = [
        (reverse(member.id, "missing"), grpc.StatusCode.NOT_FOUND, ""),
        (reverse(member.id, "o", 2_000, "r-2"), grpc.StatusCode.INVALID_ARGUMENT, "amount_cents"),
        (reverse(member.id, "o", 200, "r-1"), grpc.StatusCode.ALREADY_EXISTS, ""),
        (reverse(member.id, "", 0, "r-3"), grpc.StatusCode.INVALID_ARGUMENT, "purchase_event_id"),
        (reverse(member.id, "o", 0, ""), grpc.StatusCode.INVALID_ARGUMENT, "event_id"),
        (reverse(member.id, "o", -1, "r-4"), grpc.StatusCode.INVALID_ARGUMENT, "amount_cents"),
        (reverse(str(uuid.uuid4()), "o"), grpc.StatusCode.NOT_FOUND, ""),
    ]
    for request, code, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await api.members.ReversePurchase(request)
        assert (failure(bad.value).code, failure(bad.value).field) == (code, field), request
