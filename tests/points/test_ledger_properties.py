"""Property-based: any sequence of earn / purchase / redeem / cancel / expire / transfer /
reversal / adjust keeps the ledger's invariants after every step, against real PostgreSQL
and Redis: balance = sum of entries = sum of lot remainders (debt apart: the sum of the
entries' debt changes), never negative, and Redis available = balance - held.

Plus the race of the issue: a member redeeming while a transfer and an expiry run at the
same moment cannot overdraw."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.v1 import common_pb2, member_pb2, redemption_pb2
from tests.conftest import Running
from tests.factories import failure, key
from tests.flashsale.helpers import settled_audit
from tests.points.helpers import assert_ledger_holds, earn

# Business answers a step may get instead of OK: they must change nothing.
_ALLOWED = {
    "INSUFFICIENT_POINTS",
    "PURCHASE_FULLY_REVERSED",
    "REDEMPTION_NOT_CANCELLABLE",
    "LIMIT_EXCEEDED",
}

member_index = st.integers(0, 1)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("earn"), member_index, st.integers(1, 500)),
        st.tuples(st.just("purchase"), member_index, st.integers(1, 60_000)),
        st.tuples(st.just("redeem"), member_index, st.integers(1, 3)),
        st.tuples(st.just("cancel"), st.integers(0, 7), st.just(0)),
        st.tuples(st.just("age"), member_index, st.integers(0, 5)),
        st.tuples(st.just("expire"), st.just(0), st.just(0)),
        st.tuples(st.just("transfer"), member_index, st.integers(1, 400)),
        st.tuples(st.just("reverse"), st.integers(0, 7), st.integers(0, 60_000)),
        st.tuples(st.just("adjust"), member_index, st.integers(-300, 300).filter(bool)),
    ),
    min_size=1,
    max_size=16,
)

# Cancellable after commit: no code is issued (a virtual good's code is final).
SERVICE = common_pb2.ITEM_KIND_SERVICE


class Scenario:
    def __init__(self, running: Running, members: list[str], campaign: str) -> None:
        self.running = running
        self.api = running.api
        self.members = members
        self.campaign = campaign
        self.redemptions: list[tuple[str, str]] = []  # (redemption id, member id)
        self.purchases: list[tuple[str, str]] = []  # (member id, event id)

    async def step(self, op: str, a: int, b: int) -> None:
        api, m = self.api, self.members
        match op:
            case "earn":
                await earn(self.running, m[a], b)
            case "purchase":
                event = key()
                await api.members.EarnForPurchase(
                    member_pb2.EarnForPurchaseRequest(
                        member_id=m[a], amount_cents=b, event_id=event
                    )
                )
                self.purchases.append((m[a], event))
            case "redeem":
                done = await api.redeem(m[a], self.campaign, quantity=b)
                self.redemptions.append((done.redemption.id, m[a]))
            case "cancel" if self.redemptions:
                rid, owner = self.redemptions[a % len(self.redemptions)]
                await api.redemptions.CancelRedemption(
                    redemption_pb2.CancelRedemptionRequest(redemption_id=rid, member_id=owner)
                )
            case "age":
                await self._age(m[a], b)
            case "expire":
                await self.running.app.points.expiry.expire_points()
            case "transfer":
                await api.members.TransferPoints(
                    member_pb2.TransferPointsRequest(
                        from_member_id=m[a], to_member_id=m[1 - a], points=b, idempotency_key=key()
                    )
                )
            case "reverse" if self.purchases:
                owner, event = self.purchases[a % len(self.purchases)]
                await api.members.ReversePurchase(
                    member_pb2.ReversePurchaseRequest(
                        member_id=owner, purchase_event_id=event, amount_cents=b, event_id=key()
                    )
                )
            case "adjust":
                await api.members.AdjustPoints(
                    member_pb2.AdjustPointsRequest(
                        member_id=m[a],
                        delta=b,
                        reason="property",
                        operator_id="op",
                        idempotency_key=key(),
                    )
                )

    async def _age(self, member_id: str, nth: int) -> None:
        """Moves the member's nth lot (that still holds points) into the past."""
        async with self.running.app.pool.connection() as conn:
            await conn.execute(
                "UPDATE point_lots SET expires_at = %s WHERE id = (SELECT id FROM point_lots "
                "WHERE member_id = %s AND remaining > 0 ORDER BY expires_at, id "
                "OFFSET %s LIMIT 1)",
                (datetime.now(UTC) - timedelta(seconds=1), member_id, nth),
            )


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=steps)
async def test_any_sequence_keeps_the_ledger_explained(server: Running, ops: list[Any]) -> None:
    api = server.api
    a, b = await api.member(), await api.member()
    for x, y in ((a, b), (b, a)):
        await api.members.AddBeneficiary(
            member_pb2.AddBeneficiaryRequest(member_id=x.id, beneficiary_id=y.id)
        )
    campaign = await api.campaign(units=100, points_price=150, limit=100, kind=SERVICE)
    scenario = Scenario(server, [a.id, b.id], campaign.id)
    for op in ops:
        try:
            await scenario.step(*op)
        except grpc.aio.AioRpcError as e:
            answer = failure(e)
            ok = answer.reason in _ALLOWED or answer.field == "amount_cents"
            assert ok, (op, answer)
        for member_id in (a.id, b.id):
            await assert_ledger_holds(server, member_id)


async def test_redeeming_while_a_transfer_and_an_expiry_run_cannot_overdraw(
    server: Running,
) -> None:
    """1300 points, 500 of them past expiry: after the expiry 800 are left, enough for one
    600-point spend, not for both the redemption and the transfer fired at once."""
    api = server.api
    campaign = await api.campaign(units=100, points_price=600, limit=100, kind=SERVICE)
    winners: set[str] = set()
    for _ in range(8):
        member, friend = await api.member(), await api.member()
        expiring = await earn(server, member.id, 500)
        await earn(server, member.id, 800)
        await api.members.AddBeneficiary(
            member_pb2.AddBeneficiaryRequest(member_id=member.id, beneficiary_id=friend.id)
        )
        async with server.app.pool.connection() as conn:
            await conn.execute(
                "UPDATE point_lots SET expires_at = now() - interval '1 second' "
                "WHERE member_id = %s AND reference = %s",
                (member.id, f"earn:{expiring}"),
            )

        results = await asyncio.gather(
            api.redeem(member.id, campaign.id),
            api.members.TransferPoints(
                member_pb2.TransferPointsRequest(
                    from_member_id=member.id,
                    to_member_id=friend.id,
                    points=600,
                    idempotency_key=key(),
                )
            ),
            server.app.points.expiry.expire_points(),
            return_exceptions=True,
        )

        succeeded = []
        for name, result in zip(("redeem", "transfer"), results[:2], strict=True):
            if isinstance(result, grpc.aio.AioRpcError):
                assert failure(result).reason == "INSUFFICIENT_POINTS", result
            else:
                assert not isinstance(result, BaseException), result
                succeeded.append(name)
        assert len(succeeded) == 1, results
        winners.update(succeeded)
        ledger = await assert_ledger_holds(server, member.id)
        assert ledger.balance == 1300 - 500 - 600
        async with server.app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT coalesce(sum(amount), 0) FROM ledger_entries "
                "WHERE member_id = %s AND kind = 'expire'",
                (member.id,),
            )
            row = await cur.fetchone()
        assert row is not None and row[0] == -500
        await assert_ledger_holds(server, friend.id)
    assert (await settled_audit(server)).ok
    assert winners
