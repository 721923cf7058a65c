"""Points + cash: points and units stay held while the payment is confirmed or times out."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from loyalty.v1 import common_pb2, redemption_pb2
from points.program import Program
from tests.conftest import Running, StartServer
from tests.factories import ADDRESS, failure, key
from tests.flashsale.helpers import outcomes, settled_audit


def confirm(
    redemption: redemption_pb2.Redemption,
    reference: str = "pay-1",
    *,
    amount_cents: int | None = None,
    currency: str = "CNY",
) -> redemption_pb2.ConfirmPaymentRequest:
    """Pays the redemption's price, unless told to pay something else."""
    return redemption_pb2.ConfirmPaymentRequest(
        redemption_id=redemption.id,
        member_id=redemption.member_id,
        payment_reference=reference,
        amount_cents=redemption.cash_total_cents if amount_cents is None else amount_cents,
        currency=currency,
    )


async def test_confirmed_in_time_commits(start_server: StartServer) -> None:
    running = await start_server(payment_window_seconds=30.0)
    api = running.api
    campaign = await api.campaign(units=5, points_price=200, cash_price_cents=999)
    member = await api.member(points=1000)

    pending = (await api.redeem(member.id, campaign.id, quantity=2)).redemption
    while_pending = (await api.get_campaign(campaign.id), await api.balance(member.id))
    confirmed = await api.redemptions.ConfirmPayment(confirm(pending))
    again = await api.redemptions.ConfirmPayment(confirm(pending))

    assert pending.status == redemption_pb2.REDEMPTION_STATUS_PENDING_PAYMENT
    assert (pending.cash_total_cents, pending.points_total) == (1998, 400)
    assert pending.HasField("payment_due_at") and not pending.redemption_code
    assert (while_pending[0].units_held, while_pending[0].units_committed) == (2, 0)
    assert (while_pending[1].balance, while_pending[1].held, while_pending[1].available) == (
        1000,
        400,
        600,
    )
    assert confirmed.status == redemption_pb2.REDEMPTION_STATUS_COMMITTED
    assert confirmed.payment_reference == "pay-1" and len(confirmed.redemption_code) == 19
    assert again.redemption_code == confirmed.redemption_code
    after = (await api.get_campaign(campaign.id), await api.balance(member.id))
    assert (after[0].units_held, after[0].units_committed) == (0, 2)
    assert (after[1].balance, after[1].held, after[1].available) == (600, 0, 600)
    assert (await settled_audit(running)).ok


async def test_unconfirmed_expires_and_releases(start_server: StartServer) -> None:
    running = await start_server(payment_window_seconds=1.0)
    api = running.api
    campaign = await api.campaign(units=1, points_price=200, cash_price_cents=500)
    member, next_in_line = await api.member(points=1000), await api.member(points=1000)
    pending = (await api.redeem(member.id, campaign.id)).redemption

    await asyncio.sleep(1.0 + 2 * running.app.settings.sweep_interval_seconds + 0.2)

    expired = await api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(redemption_id=pending.id, member_id=member.id)
    )
    assert expired.status == redemption_pb2.REDEMPTION_STATUS_EXPIRED
    after = (await api.get_campaign(campaign.id), await api.balance(member.id))
    assert (after[0].units_held, after[0].units_remaining) == (0, 1)
    assert (after[1].balance, after[1].held) == (1000, 0)
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await api.redemptions.ConfirmPayment(confirm(pending))
    assert failure(late.value).reason == "PAYMENT_NOT_PENDING"
    assert (await api.redeem(next_in_line.id, campaign.id)).redemption.quantity == 1
    assert (await settled_audit(running)).ok


async def test_confirm_after_the_window_before_the_sweep_is_refused_and_expires(
    start_server: StartServer,
) -> None:
    running = await start_server(payment_window_seconds=1.0)
    await running.app.sweeper.stop()
    api = running.api
    campaign = await api.campaign(units=1, points_price=200, cash_price_cents=500)
    member = await api.member(points=1000)
    pending = (await api.redeem(member.id, campaign.id)).redemption
    await asyncio.sleep(1.1)

    with pytest.raises(grpc.aio.AioRpcError) as late:
        await api.redemptions.ConfirmPayment(confirm(pending))

    assert failure(late.value).reason == "PAYMENT_WINDOW_CLOSED"
    assert (await api.get_campaign(campaign.id)).units_remaining == 1
    assert (await api.balance(member.id)).held == 0


async def test_cancel_while_pending_returns_held_points(start_server: StartServer) -> None:
    running = await start_server()
    api = running.api
    campaign = await api.campaign(
        units=3, points_price=100, cash_price_cents=100, kind=common_pb2.ITEM_KIND_PHYSICAL
    )
    member = await api.member(points=500)
    pending = (await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)).redemption

    cancelled = await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(redemption_id=pending.id, member_id=member.id)
    )

    assert cancelled.status == redemption_pb2.REDEMPTION_STATUS_CANCELLED
    assert cancelled.shipping_address.city == "Shanghai"
    balance = await api.balance(member.id)
    assert (balance.balance, balance.held) == (500, 0)
    assert (await api.get_campaign(campaign.id)).units_remaining == 3
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redemptions.ConfirmPayment(confirm(pending))
    assert failure(refused.value).reason == "PAYMENT_NOT_PENDING"
    assert (await settled_audit(running)).ok


async def test_points_only_redemption_cannot_be_confirmed(start_server: StartServer) -> None:
    running = await start_server()
    api = running.api
    campaign = await api.campaign(units=3)
    member = await api.member(points=500)
    committed = (await api.redeem(member.id, campaign.id, idem=key())).redemption

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redemptions.ConfirmPayment(confirm(committed, amount_cents=100))

    f = failure(refused.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_NOT_PENDING")


async def test_another_members_redemption_is_not_found_to_read_or_pay(server: Running) -> None:
    """A gateway call that names a redemption also names its member: for anyone else the
    redemption does not exist, and paying for it changes nothing."""
    api = server.api
    campaign = await api.campaign(units=2, points_price=100, cash_price_cents=500)
    owner, stranger = await api.member(points=1000), await api.member(points=1000)
    pending = (await api.redeem(owner.id, campaign.id)).redemption

    with pytest.raises(grpc.aio.AioRpcError) as read:
        await api.redemptions.GetRedemption(
            redemption_pb2.GetRedemptionRequest(redemption_id=pending.id, member_id=stranger.id)
        )
    with pytest.raises(grpc.aio.AioRpcError) as paid:
        await api.redemptions.ConfirmPayment(
            redemption_pb2.ConfirmPaymentRequest(
                redemption_id=pending.id,
                member_id=stranger.id,
                payment_reference="pay-x",
                amount_cents=pending.cash_total_cents,
                currency="CNY",
            )
        )

    assert failure(read.value).code == failure(paid.value).code == grpc.StatusCode.NOT_FOUND
    still = await api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(redemption_id=pending.id, member_id=owner.id)
    )
    assert still.status == redemption_pb2.REDEMPTION_STATUS_PENDING_PAYMENT


async def assert_still_pending(
    running: Running, pending: redemption_pb2.Redemption, *, units: int, points: int
) -> None:
    """Nothing moved: the redemption waits for payment with its units and points held, in
    PostgreSQL and in the Redis gate alike."""
    api = running.api
    now = await api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(redemption_id=pending.id, member_id=pending.member_id)
    )
    assert now.status == redemption_pb2.REDEMPTION_STATUS_PENDING_PAYMENT
    assert (now.payment_reference, now.redemption_code) == ("", "")
    campaign = await api.get_campaign(pending.campaign_id)
    assert (campaign.units_held, campaign.units_committed) == (units, 0)
    balance = await api.balance(pending.member_id)
    assert (balance.held, balance.balance - balance.available) == (points, points)
    assert (await settled_audit(running)).ok


async def test_a_payment_of_another_amount_is_refused_and_changes_nothing(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(units=5, points_price=200, cash_price_cents=999)
    member = await api.member(points=1000)
    pending = (await api.redeem(member.id, campaign.id, quantity=2)).redemption

    refusals = []
    for amount in (1997, 1999, 999):  # short, over, the price of one unit
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.redemptions.ConfirmPayment(confirm(pending, amount_cents=amount))
        refusals.append(failure(refused.value))

    for f in refusals:
        assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_MISMATCH")
        assert f.metadata == {
            "redemption_id": pending.id,
            "amount_cents": "1998",
            "currency": "CNY",
        }
    await assert_still_pending(server, pending, units=2, points=400)
    # The refused reference is not spent: the right payment under it goes through.
    paid = await api.redemptions.ConfirmPayment(confirm(pending))
    assert (paid.status, paid.payment_reference) == (
        redemption_pb2.REDEMPTION_STATUS_COMMITTED,
        "pay-1",
    )


async def test_a_payment_in_another_currency_is_refused_and_changes_nothing(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(units=5, points_price=100, cash_price_cents=500)
    member = await api.member(points=1000)
    pending = (await api.redeem(member.id, campaign.id)).redemption

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redemptions.ConfirmPayment(confirm(pending, currency="USD"))

    f = failure(refused.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_MISMATCH")
    assert (f.metadata["amount_cents"], f.metadata["currency"]) == ("500", "CNY")
    await assert_still_pending(server, pending, units=1, points=100)


async def test_the_malls_currency_is_the_setting(start_server: StartServer) -> None:
    """SURGE_CURRENCY names the one currency every cash price is in."""
    running = await start_server(program=Program(currency="EUR"))
    api = running.api
    campaign = await api.campaign(units=5, points_price=100, cash_price_cents=500)
    member = await api.member(points=1000)
    pending = (await api.redeem(member.id, campaign.id)).redemption

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redemptions.ConfirmPayment(confirm(pending, currency="CNY"))
    paid = await api.redemptions.ConfirmPayment(confirm(pending, currency="EUR"))

    f = failure(refused.value)
    assert (f.reason, f.metadata["currency"]) == ("PAYMENT_MISMATCH", "EUR")
    assert paid.status == redemption_pb2.REDEMPTION_STATUS_COMMITTED


async def test_a_confirmation_repeated_with_another_amount_is_refused(server: Running) -> None:
    """The same reference again is the same confirmation only if it paid the same: the
    redemption stays as the first confirmation left it."""
    api = server.api
    campaign = await api.campaign(units=5, points_price=100, cash_price_cents=500)
    member = await api.member(points=1000)
    pending = (await api.redeem(member.id, campaign.id)).redemption
    paid = await api.redemptions.ConfirmPayment(confirm(pending))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redemptions.ConfirmPayment(confirm(pending, amount_cents=400))
    again = await api.redemptions.ConfirmPayment(confirm(pending))

    assert failure(refused.value).reason == "PAYMENT_MISMATCH"
    assert again == paid


async def pending_payment(
    running: Running, *, cash_price_cents: int = 500
) -> redemption_pb2.Redemption:
    """A points + cash redemption of one unit (100 points), alone on its campaign."""
    api = running.api
    campaign = await api.campaign(units=3, points_price=100, cash_price_cents=cash_price_cents)
    member = await api.member(points=1000)
    return (await api.redeem(member.id, campaign.id)).redemption


async def test_a_payment_reference_confirms_one_redemption_only(server: Running) -> None:
    api = server.api
    first, second = await pending_payment(server), await pending_payment(server)
    paid = await api.redemptions.ConfirmPayment(confirm(first, "pay-once"))

    again = await api.redemptions.ConfirmPayment(confirm(first, "pay-once"))
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await api.redemptions.ConfirmPayment(confirm(second, "pay-once"))
    with pytest.raises(grpc.aio.AioRpcError) as paid_already:
        await api.redemptions.ConfirmPayment(confirm(first, "pay-twice"))

    assert again == paid  # the same confirmation: the redemption as it was
    f = failure(taken.value)
    assert (f.code, f.reason) == (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
    assert f.metadata == {"resource": "redemption", "field": "payment_reference"}
    await assert_still_pending(server, second, units=1, points=100)
    # A paid redemption is not paid again under another reference, and keeps its own.
    f = failure(paid_already.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_NOT_PENDING")
    now = await api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(redemption_id=first.id, member_id=first.member_id)
    )
    assert now == paid
    # The second redemption's own payment goes through.
    assert (await api.redemptions.ConfirmPayment(confirm(second, "pay-2"))).status == (
        redemption_pb2.REDEMPTION_STATUS_COMMITTED
    )
    assert (await settled_audit(server)).ok


async def test_racing_confirmations_with_one_reference_confirm_one_redemption(
    server: Running,
) -> None:
    """Pairs of redemptions on different campaigns and members (no lock in common), each
    pair confirmed at once with one reference: PostgreSQL's unique index lets one through."""
    api = server.api
    pairs = [(await pending_payment(server), await pending_payment(server)) for _ in range(3)]

    ok, refused = await outcomes(
        api.redemptions.ConfirmPayment(confirm(r, f"pay-race-{i}"))
        for i, pair in enumerate(pairs)
        for r in pair
    )

    assert refused == {"ALREADY_EXISTS": 3}
    assert sorted(r.payment_reference for r in ok) == ["pay-race-0", "pay-race-1", "pay-race-2"]
    winners = {r.id for r in ok}
    for pair in pairs:
        (loser,) = [r for r in pair if r.id not in winners]
        await assert_still_pending(server, loser, units=1, points=100)
    async with server.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payment_reference, count(*) FROM redemptions "
            "WHERE payment_reference LIKE 'pay-race-%%' GROUP BY 1"
        )
        assert sorted(await cur.fetchall()) == [(f"pay-race-{i}", 1) for i in range(3)]
