"""Ledger entries an operator makes by hand carry the credential's subject (`actor`): an
adjustment, and the debt repayment its credit triggers. The service's own entries (earning,
redemptions, a repayment an earning triggers) carry none."""

from __future__ import annotations

from loyalty.v1 import member_pb2
from tests.conftest import TEST_SUBJECT, Running
from tests.factories import key
from tests.points.helpers import assert_ledger_holds

ADJUST = member_pb2.LEDGER_ENTRY_KIND_ADJUST
EARN = member_pb2.LEDGER_ENTRY_KIND_EARN
REDEEM = member_pb2.LEDGER_ENTRY_KIND_REDEEM
REVERSAL = member_pb2.LEDGER_ENTRY_KIND_REVERSAL


def adjust(member_id: str, delta: int) -> member_pb2.AdjustPointsRequest:
    return member_pb2.AdjustPointsRequest(
        member_id=member_id,
        delta=delta,
        reason="goodwill",
        operator_id="op-1",
        idempotency_key=key(),
    )


async def _statement(running: Running, member_id: str) -> list[tuple[int, int, str, str]]:
    page = await running.api.members.ListLedgerEntries(
        member_pb2.ListLedgerEntriesRequest(member_id=member_id, page_size=100)
    )
    return [(e.kind, e.amount, e.reason, e.actor) for e in reversed(page.entries)]


async def test_adjustments_carry_the_actor_and_earnings_do_not(server: Running) -> None:
    api = server.api
    member = await api.member(points=100)

    await api.members.AdjustPoints(adjust(member.id, 50))
    await api.members.AdjustPoints(adjust(member.id, -30))

    assert await _statement(server, member.id) == [
        (EARN, 100, "test", ""),
        (ADJUST, 50, "goodwill", TEST_SUBJECT),
        (ADJUST, -30, "goodwill", TEST_SUBJECT),
    ]


async def test_a_debt_repayment_carries_the_actor_of_the_credit_that_made_it(
    server: Running,
) -> None:
    api = server.api
    member = await api.member()
    await api.members.EarnForPurchase(
        member_pb2.EarnForPurchaseRequest(member_id=member.id, amount_cents=50_000, event_id="tv")
    )
    campaign = await api.campaign(points_price=450)
    await api.redeem(member.id, campaign.id)
    await api.members.ReversePurchase(
        member_pb2.ReversePurchaseRequest(
            member_id=member.id, purchase_event_id="tv", event_id="refund-1"
        )
    )  # 50 taken back, 450 of debt
    await api.earn(member.id, 300)  # repays 300: the service's own
    await api.members.AdjustPoints(adjust(member.id, 200))  # repays the last 150: the operator's

    statement = await _statement(server, member.id)
    assert statement[-4:] == [
        (EARN, 300, "test", ""),
        (REVERSAL, -300, "debt repayment", ""),
        (ADJUST, 200, "goodwill", TEST_SUBJECT),
        (REVERSAL, -150, "debt repayment", TEST_SUBJECT),
    ]
    assert [actor for kind, _, _, actor in statement if kind == REDEEM] == [""]
    after = await assert_ledger_holds(server, member.id)
    assert (after.balance, after.debt) == (50, 0)
