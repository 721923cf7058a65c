"""Returns and exchanges through a real channel: the window, restock vs write-off (stock and
points), the cash refund's bound, rejection, and an exchange's replacement."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from loyalty.v1 import fulfilment_pb2, redemption_pb2
from tests.conftest import Running, StartServer
from tests.factories import ADDRESS, failure, ts
from tests.flashsale.fulfilment_helpers import PHYSICAL, REJECTION, Fulfil, status_name
from tests.flashsale.helpers import outcomes, settled_audit

R = redemption_pb2


@pytest.fixture
async def fulfil(server: Running) -> AsyncIterator[Fulfil]:
    f = Fulfil.on(server)
    yield f
    await f.close()


async def delivered(fulfil: Fulfil, **extra: object) -> R.Redemption:
    r = await fulfil.ship(await fulfil.pack(await fulfil.physical(**extra)))  # type: ignore[arg-type]
    return await fulfil.deliver(r)


def later(running: Running, by: timedelta) -> None:
    """Moves the fulfilment's clock (the return window's) forward from now."""
    moment = datetime.now(UTC) + by
    running.app.fulfilment.clock = lambda: moment


async def test_a_return_within_the_window_only(fulfil: Fulfil) -> None:
    """The default window is 7 days from delivery (SURGE_RETURN_WINDOW_SECONDS)."""
    inside, outside = await delivered(fulfil), await delivered(fulfil)

    later(fulfil.running, timedelta(days=6, hours=23))
    requested = await fulfil.request_return(inside)
    later(fulfil.running, timedelta(days=7, minutes=1))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await fulfil.request_return(outside)

    assert status_name(requested) == "RETURN_REQUESTED"
    f = failure(refused.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RETURN_WINDOW_CLOSED")
    assert datetime.fromisoformat(f.metadata["closed_at"]) == outside.delivered_at.ToDatetime(
        tzinfo=UTC
    ) + timedelta(days=7)
    assert status_name(await fulfil.get(outside)) == "DELIVERED"
    assert [t for t, _ in await fulfil.events_of(outside.id)][-1] == "redemption.delivered"


async def test_the_window_is_configurable(start_server: StartServer) -> None:
    running = await start_server(return_window_seconds=60.0)
    fulfil = Fulfil.on(running)
    try:
        late, on_time = await delivered(fulfil), await delivered(fulfil)
        later(running, timedelta(seconds=61))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await fulfil.request_return(late)
        assert failure(refused.value).reason == "RETURN_WINDOW_CLOSED"
        later(running, timedelta(seconds=50))
        assert status_name(await fulfil.request_return(on_time)) == "RETURN_REQUESTED"
    finally:
        await fulfil.close()


async def test_delivery_times_are_checked(fulfil: Fulfil) -> None:
    shipped = await fulfil.ship(await fulfil.pack(await fulfil.physical()))
    for moment in (datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await fulfil.deliver(shipped, delivered_at=ts(moment))
        f = failure(refused.value)
        assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, "delivered_at")
    assert status_name(await fulfil.get(shipped)) == "SHIPPED"


async def test_accepted_with_restock_refunds_points_and_restocks(fulfil: Fulfil) -> None:
    api = fulfil.running.api
    r = await fulfil.request_return(await delivered(fulfil, quantity=2))
    assert (await api.balance(r.member_id)).balance == 400  # 1000 - 2 x 300
    stock_before = await fulfil.stock(r.item_id)
    campaign_before = await api.get_campaign(r.campaign_id)

    returned = await fulfil.accept(r, R.RETURN_DISPOSITION_RESTOCK)

    assert status_name(returned) == "RETURNED"
    assert returned.return_info.disposition == R.RETURN_DISPOSITION_RESTOCK
    assert await fulfil.stock(r.item_id) == stock_before + 2
    balance = await api.balance(r.member_id)
    assert (balance.balance, balance.available) == (1000, 1000)
    # Still sold for the campaign (it may have ended): the units went to the item.
    assert await api.get_campaign(r.campaign_id) == campaign_before
    async with fulfil.running.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT kind, amount FROM ledger_entries WHERE member_id = %s ORDER BY created_at",
            (r.member_id,),
        )
        assert [tuple(e) for e in await cur.fetchall()] == [
            ("earn", 1000),
            ("redeem", -600),
            ("refund", 600),
        ]
    # Accepting again with the same terms changes nothing: no second refund.
    assert await fulfil.accept(r, R.RETURN_DISPOSITION_RESTOCK) == await fulfil.get(r)
    assert (await api.balance(r.member_id)).balance == 1000
    assert await fulfil.stock(r.item_id) == stock_before + 2
    assert (await settled_audit(fulfil.running)).ok


async def test_accepted_with_write_off_keeps_stock_and_records_the_cash_refund(
    fulfil: Fulfil,
) -> None:
    api = fulfil.running.api
    campaign = await api.campaign(units=3, points_price=200, cash_price_cents=999, kind=PHYSICAL)
    member = await api.member(points=1000)

    pending = (await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)).redemption
    await api.redemptions.ConfirmPayment(
        R.ConfirmPaymentRequest(
            redemption_id=pending.id,
            member_id=member.id,
            payment_reference="pay-ret-1",
            amount_cents=999,
            currency="CNY",
        )
    )
    r = await fulfil.deliver(await fulfil.ship(await fulfil.pack(pending)))
    r = await fulfil.request_return(r)
    stock_before = await fulfil.stock(r.item_id)

    with pytest.raises(grpc.aio.AioRpcError) as too_much:
        await fulfil.accept(r, R.RETURN_DISPOSITION_WRITE_OFF, cash_refund_cents=1000)
    f = failure(too_much.value)
    assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, "cash_refund_cents")
    assert status_name(await fulfil.get(r)) == "RETURN_REQUESTED"

    returned = await fulfil.accept(r, R.RETURN_DISPOSITION_WRITE_OFF, cash_refund_cents=500)

    assert returned.return_info.cash_refund_cents == 500
    assert returned.return_info.disposition == R.RETURN_DISPOSITION_WRITE_OFF
    assert await fulfil.stock(r.item_id) == stock_before
    assert (await api.balance(member.id)).balance == 1000
    history = [status_name_of(h.status) for h in returned.history]
    assert history == [
        "PENDING_PAYMENT",
        "COMMITTED",
        "PACKING",
        "SHIPPED",
        "DELIVERED",
        "RETURN_REQUESTED",
        "RETURNED",
    ]
    # The payment service retrying its confirmation gets the redemption as it is now.
    again = await api.redemptions.ConfirmPayment(
        R.ConfirmPaymentRequest(
            redemption_id=pending.id,
            member_id=member.id,
            payment_reference="pay-ret-1",
            amount_cents=999,
            currency="CNY",
        )
    )
    assert again == await fulfil.get(r)
    # Other terms after the fact are refused, naming the state.
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await fulfil.accept(r, R.RETURN_DISPOSITION_RESTOCK, cash_refund_cents=500)
    assert failure(other.value).metadata["status"] == "RETURNED"
    assert (await settled_audit(fulfil.running)).ok


def status_name_of(value: int) -> str:
    return R.RedemptionStatus.Name(value).removeprefix("REDEMPTION_STATUS_")  # type: ignore[arg-type]


async def test_rejected_with_a_reason_refunds_nothing(fulfil: Fulfil) -> None:
    api = fulfil.running.api
    r = await fulfil.request_return(await delivered(fulfil))
    stock_before = await fulfil.stock(r.item_id)

    rejected = await fulfil.reject(r)

    assert status_name(rejected) == "RETURN_REJECTED"
    assert rejected.return_info.rejection_reason == REJECTION
    assert rejected.history[-1].actor == "ops:alice" and rejected.history[-1].note == REJECTION
    assert (await api.balance(r.member_id)).balance == 700
    assert await fulfil.stock(r.item_id) == stock_before
    assert [t for t, _ in await fulfil.events_of(r.id)][-1] == "redemption.return_rejected"
    assert (await settled_audit(fulfil.running)).ok


async def test_an_exchange_makes_a_linked_free_replacement_from_stock(fulfil: Fulfil) -> None:
    api = fulfil.running.api
    r = await fulfil.request_return(await delivered(fulfil, units=2))
    # The campaign took all of the item's stock (units=2): none is left to replace from.
    assert await fulfil.stock(r.item_id) == 0

    with pytest.raises(grpc.aio.AioRpcError) as none_left:
        await fulfil.accept(r, R.RETURN_DISPOSITION_WRITE_OFF, exchange=True)
    f = failure(none_left.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_STOCK")
    assert status_name(await fulfil.get(r)) == "RETURN_REQUESTED"
    with pytest.raises(grpc.aio.AioRpcError) as refund:
        await fulfil.accept(r, R.RETURN_DISPOSITION_RESTOCK, exchange=True, cash_refund_cents=1)
    assert failure(refund.value).field == "cash_refund_cents"

    # Restocked, the returned unit is the replacement's: the stock ends where it was.
    returned = await fulfil.accept(r, R.RETURN_DISPOSITION_RESTOCK, exchange=True)

    assert returned.replaced_by
    replacement = await api.redemptions.GetRedemption(
        R.GetRedemptionRequest(redemption_id=returned.replaced_by, member_id=r.member_id)
    )
    assert replacement.replacement_of == r.id
    assert status_name(replacement) == "COMMITTED"
    assert (replacement.points_total, replacement.cash_total_cents) == (0, 0)
    assert (replacement.item_id, replacement.quantity) == (r.item_id, r.quantity)
    assert replacement.shipping_address == r.shipping_address
    assert await fulfil.stock(r.item_id) == 0
    assert (await api.balance(r.member_id)).balance == 700  # paid once, not refunded
    campaign = await api.get_campaign(r.campaign_id)
    assert campaign.units_committed == 1  # the replacement took item stock, not the campaign's
    assert ("redemption.committed", "ops:alice") in await fulfil.events_of(replacement.id)
    # The replacement ships like any physical redemption.
    assert status_name(await fulfil.ship(await fulfil.pack(replacement))) == "SHIPPED"
    # Repeating the exchange makes no second replacement.
    again = await fulfil.accept(r, R.RETURN_DISPOSITION_RESTOCK, exchange=True)
    assert again.replaced_by == returned.replaced_by
    async with fulfil.running.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM redemptions WHERE replacement_of = %s", (r.id,)
        )
        assert (await cur.fetchone()) == (1,)
    assert (await settled_audit(fulfil.running)).ok


async def test_a_replacement_cannot_be_cancelled(fulfil: Fulfil) -> None:
    """It took no campaign units and no points: a cancel would return what it never took."""
    r = await fulfil.request_return(await delivered(fulfil))
    replacement_id = (
        await fulfil.accept(r, R.RETURN_DISPOSITION_RESTOCK, exchange=True)
    ).replaced_by
    replacement = await fulfil.get(R.Redemption(id=replacement_id, member_id=r.member_id))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await fulfil.cancel(replacement)
    assert failure(refused.value).reason == "REDEMPTION_NOT_CANCELLABLE"
    assert status_name(await fulfil.get(replacement)) == "COMMITTED"


async def test_a_return_request_is_the_members_own(fulfil: Fulfil) -> None:
    r = await delivered(fulfil)
    requested = await fulfil.gateway.RequestReturn(
        fulfilment_pb2.RequestReturnRequest(
            redemption_id=r.id, member_id=r.member_id, reason="  too small  "
        )
    )
    assert requested.return_info.reason == "too small"
    assert requested.history[-1].actor == f"member:{r.member_id}"


async def test_concurrent_exchanges_make_one_replacement(fulfil: Fulfil) -> None:
    """The row lock serializes them: the first exchanges, the rest find it done."""
    r = await fulfil.request_return(await delivered(fulfil))
    stock_before = await fulfil.stock(r.item_id)
    ok, refused = await outcomes(
        fulfil.accept(r, R.RETURN_DISPOSITION_RESTOCK, exchange=True) for _ in range(8)
    )
    assert not refused
    assert len({o.replaced_by for o in ok}) == 1 and ok[0].replaced_by
    # The returned unit restocked, then taken by the one replacement: net zero.
    assert await fulfil.stock(r.item_id) == stock_before == 0
    assert [t for t, _ in await fulfil.events_of(r.id)].count("redemption.returned") == 1
    assert (await settled_audit(fulfil.running)).ok


async def test_concurrent_shipments_with_other_details_keep_the_first(fulfil: Fulfil) -> None:
    packing = await fulfil.pack(await fulfil.physical())
    ok, refused = await outcomes(
        fulfil.warehouse.MarkShipped(
            fulfilment_pb2.MarkShippedRequest(
                redemption_id=packing.id, carrier=f"carrier-{i}", tracking_number="T1"
            )
        )
        for i in range(6)
    )
    assert len(ok) == 1 and refused == {"INVALID_TRANSITION": 5}
    assert (await fulfil.get(packing)).shipment.carrier == ok[0].shipment.carrier
    assert [t for t, _ in await fulfil.events_of(packing.id)].count("redemption.shipped") == 1


async def test_the_audit_finds_a_broken_exchange_link(fulfil: Fulfil) -> None:
    r = await fulfil.request_return(await delivered(fulfil))
    await fulfil.accept(r, R.RETURN_DISPOSITION_RESTOCK, exchange=True)
    assert (await settled_audit(fulfil.running)).ok
    async with fulfil.running.app.pool.connection() as conn:
        await conn.execute("UPDATE redemptions SET replaced_by = NULL WHERE id = %s", (r.id,))

    report = await settled_audit(fulfil.running)

    assert [v for v in report.violations if v.startswith("exchange links disagree")]
