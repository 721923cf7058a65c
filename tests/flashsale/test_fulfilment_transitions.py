"""The physical path through a real channel: every step legal, repeated and illegal, from
every state; history, events and the audit trail each step writes; bad input."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from loyalty.v1 import fulfilment_pb2, redemption_pb2
from tests.conftest import Running
from tests.factories import failure, ts
from tests.flashsale.fulfilment_helpers import (
    CARRIER,
    TRACKING,
    Fulfil,
    status_name,
)
from tests.flashsale.helpers import settled_audit

R = redemption_pb2
Step = Callable[[Fulfil, R.Redemption], Awaitable[R.Redemption]]


@pytest.fixture
async def fulfil(server: Running) -> AsyncIterator[Fulfil]:
    f = Fulfil.on(server)
    yield f
    await f.close()


STEPS: dict[str, Step] = {
    "StartPacking": Fulfil.pack,
    "MarkShipped": Fulfil.ship,
    "MarkDelivered": Fulfil.deliver,
    "RequestReturn": Fulfil.request_return,
    "AcceptReturn": Fulfil.accept,
    "RejectReturn": Fulfil.reject,
}
STATES = [
    "COMMITTED",
    "CANCELLED",
    "PACKING",
    "SHIPPED",
    "DELIVERED",
    "RETURN_REQUESTED",
    "RETURNED",
    "RETURN_REJECTED",
]
# Where each step leads from, and the states in which it has already happened (so the same
# step with the same arguments returns the redemption unchanged). Everything else is
# FAILED_PRECONDITION / INVALID_TRANSITION.
LEGAL = {
    "StartPacking": ("COMMITTED", "PACKING"),
    "MarkShipped": ("PACKING", "SHIPPED"),
    "MarkDelivered": ("SHIPPED", "DELIVERED"),
    "RequestReturn": ("DELIVERED", "RETURN_REQUESTED"),
    "AcceptReturn": ("RETURN_REQUESTED", "RETURNED"),
    "RejectReturn": ("RETURN_REQUESTED", "RETURN_REJECTED"),
}
_AFTER_PACKING = {
    "PACKING",
    "SHIPPED",
    "DELIVERED",
    "RETURN_REQUESTED",
    "RETURNED",
    "RETURN_REJECTED",
}
HAPPENED = {
    "StartPacking": _AFTER_PACKING,
    "MarkShipped": _AFTER_PACKING - {"PACKING"},
    "MarkDelivered": _AFTER_PACKING - {"PACKING", "SHIPPED"},
    "RequestReturn": {"RETURN_REQUESTED", "RETURNED", "RETURN_REJECTED"},
    "AcceptReturn": {"RETURNED"},
    "RejectReturn": {"RETURN_REJECTED"},
}


async def test_every_step_from_every_state(fulfil: Fulfil) -> None:
    """Table-driven: 6 steps x 8 states, each from a fresh redemption in that state."""
    for state in STATES:
        for name, step in STEPS.items():
            r = await fulfil.advance_to(state)
            before = await fulfil.get(r)
            events_before = await fulfil.events_of(r.id)
            where = f"{name} from {state}"
            if LEGAL[name][0] == state:
                after = await step(fulfil, r)
                assert status_name(after) == LEGAL[name][1], where
                assert len(after.history) == len(before.history) + 1, where
                assert len(await fulfil.events_of(r.id)) == len(events_before) + 1, where
            elif state in HAPPENED[name]:
                again = await step(fulfil, r)
                assert again == before, where  # unchanged, and nothing written
                assert await fulfil.events_of(r.id) == events_before, where
            else:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await step(fulfil, r)
                f = failure(refused.value)
                assert (f.code, f.reason) == (
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "INVALID_TRANSITION",
                ), where
                assert f.metadata["status"] == state, where
                assert await fulfil.get(r) == before, where
                assert await fulfil.events_of(r.id) == events_before, where
    assert (await settled_audit(fulfil.running)).ok


async def test_the_path_writes_history_events_and_audit_with_actors(fulfil: Fulfil) -> None:
    r = await fulfil.physical()
    for step in (fulfil.pack, fulfil.ship, fulfil.deliver, fulfil.request_return, fulfil.accept):
        r = await step(r)
    got = await fulfil.get(r)

    assert [(status_name_of(h.status), h.actor) for h in got.history] == [
        ("COMMITTED", f"member:{r.member_id}"),  # synthesized from created_at
        ("PACKING", "wms-1"),
        ("SHIPPED", "wms-1"),
        ("DELIVERED", "wms-1"),
        ("RETURN_REQUESTED", f"member:{r.member_id}"),
        ("RETURNED", "ops:alice"),
    ]
    times = [h.time.ToDatetime() for h in got.history]
    assert times == sorted(times)
    assert got.history[0].time == got.create_time
    assert got.history[1].note == "picked"
    assert got.history[4].note == "too small"
    assert (got.shipment.carrier, got.shipment.tracking_number) == (CARRIER, TRACKING)
    assert got.delivered_at.seconds > 0 and got.return_info.reason == "too small"
    assert got.return_info.disposition == R.RETURN_DISPOSITION_RESTOCK
    assert await fulfil.events_of(r.id) == [
        ("redemption.committed", None),  # the group commit's (the service's own: no actor)
        ("redemption.packing", "wms-1"),
        ("redemption.shipped", "wms-1"),
        ("redemption.delivered", "wms-1"),
        ("redemption.return_requested", None),  # the member's own change
        ("redemption.returned", "ops:alice"),
    ]
    assert await fulfil.audit_of(r.id) == [
        ("fulfilment.start_packing", "wms-1"),
        ("fulfilment.mark_shipped", "wms-1"),
        ("fulfilment.mark_delivered", "wms-1"),
        ("fulfilment.accept_return", "ops:alice"),
    ]
    async with fulfil.running.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload FROM events WHERE subject_id = %s AND type = 'redemption.shipped'",
            (r.id,),
        )
        payload = (await cur.fetchone())[0]  # type: ignore[index]
    assert payload["tracking_number"] == TRACKING and payload["member_id"] == r.member_id


def status_name_of(value: int) -> str:
    return R.RedemptionStatus.Name(value).removeprefix("REDEMPTION_STATUS_")  # type: ignore[arg-type]


async def test_a_different_repeat_of_a_step_that_happened_is_refused(fulfil: Fulfil) -> None:
    r = await fulfil.ship(await fulfil.pack(await fulfil.physical()))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await fulfil.warehouse.MarkShipped(
            fulfilment_pb2.MarkShippedRequest(
                redemption_id=r.id, carrier="DHL", tracking_number=TRACKING
            )
        )
    f = failure(refused.value)
    assert (f.reason, f.metadata["status"]) == ("INVALID_TRANSITION", "SHIPPED")
    assert (await fulfil.get(r)).shipment.carrier == CARRIER


async def test_cancel_before_shipping_only(fulfil: Fulfil) -> None:
    api = fulfil.running.api
    packing = await fulfil.pack(await fulfil.physical(points_price=300))
    cancelled = await fulfil.cancel(packing)
    assert status_name(cancelled) == "CANCELLED"
    assert (await api.balance(packing.member_id)).balance == 1000
    assert (await api.get_campaign(packing.campaign_id)).units_committed == 0

    shipped = await fulfil.ship(await fulfil.pack(await fulfil.physical(points_price=300)))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await fulfil.cancel(shipped)
    f = failure(refused.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "REDEMPTION_NOT_CANCELLABLE")
    assert f.metadata["status"] == "SHIPPED"
    assert status_name(await fulfil.get(shipped)) == "SHIPPED"
    assert (await api.balance(shipped.member_id)).balance == 700
    history = (await fulfil.get(cancelled)).history
    assert [status_name_of(h.status) for h in history] == ["COMMITTED", "PACKING", "CANCELLED"]
    assert (await settled_audit(fulfil.running)).ok


async def test_bad_input_names_the_field_and_changes_nothing(fulfil: Fulfil) -> None:
    api = fulfil.running.api
    packing = await fulfil.pack(await fulfil.physical())
    virtual_campaign = await api.campaign(units=2)  # virtual: a code, no address
    member = await api.member(points=1000)
    virtual = (await api.redeem(member.id, virtual_campaign.id)).redemption
    future = datetime.now(UTC) + timedelta(hours=1)
    # (stub method, request, the field named): Any, as each stub method takes its own type.
    cases: list[tuple[Any, Any, str]] = [
        (
            fulfil.warehouse.MarkShipped,
            fulfilment_pb2.MarkShippedRequest(
                redemption_id=packing.id, carrier="x" * 65, tracking_number=TRACKING
            ),
            "carrier",
        ),
        (
            fulfil.warehouse.MarkShipped,
            fulfilment_pb2.MarkShippedRequest(
                redemption_id=packing.id, carrier=CARRIER, tracking_number="9" * 65
            ),
            "tracking_number",
        ),
        (
            fulfil.warehouse.MarkShipped,
            fulfilment_pb2.MarkShippedRequest(
                redemption_id=packing.id, carrier=" ", tracking_number=TRACKING
            ),
            "carrier",
        ),
        (
            fulfil.warehouse.MarkShipped,
            fulfilment_pb2.MarkShippedRequest(
                redemption_id=packing.id,
                carrier=CARRIER,
                tracking_number=TRACKING,
                shipped_at=ts(future),
            ),
            "shipped_at",
        ),
        (
            fulfil.warehouse.MarkShipped,
            fulfilment_pb2.MarkShippedRequest(
                redemption_id=virtual.id, carrier=CARRIER, tracking_number=TRACKING
            ),
            "tracking_number",
        ),
        (
            fulfil.warehouse.StartPacking,
            fulfilment_pb2.StartPackingRequest(redemption_id="not-a-uuid"),
            "redemption_id",
        ),
        (
            fulfil.operator.AcceptReturn,
            fulfilment_pb2.AcceptReturnRequest(redemption_id=packing.id),
            "disposition",
        ),
        (
            fulfil.operator.RejectReturn,
            fulfilment_pb2.RejectReturnRequest(redemption_id=packing.id, reason=""),
            "reason",
        ),
        (
            fulfil.gateway.RequestReturn,
            fulfilment_pb2.RequestReturnRequest(
                redemption_id=packing.id, member_id=packing.member_id, reason="r" * 501
            ),
            "reason",
        ),
    ]
    for call, request, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(request)
        f = failure(refused.value)
        assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, field), request
    assert status_name(await fulfil.get(packing)) == "PACKING"
    assert await fulfil.events_of(virtual.id) == [("redemption.committed", None)]

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await fulfil.pack(virtual)
    f = failure(refused.value)
    assert (f.reason, f.metadata["status"]) == ("INVALID_TRANSITION", "COMMITTED")


async def test_unknown_or_another_members_redemption_is_not_found(fulfil: Fulfil) -> None:
    delivered = await fulfil.advance_to("DELIVERED")
    stranger = await fulfil.running.api.member()
    for request in (
        fulfilment_pb2.RequestReturnRequest(
            redemption_id=delivered.id, member_id=stranger.id, reason="mine"
        ),
        fulfilment_pb2.RequestReturnRequest(
            redemption_id=str(uuid.uuid4()), member_id=delivered.member_id, reason="mine"
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await fulfil.gateway.RequestReturn(request)
        assert failure(missing.value).code == grpc.StatusCode.NOT_FOUND
    assert status_name(await fulfil.get(delivered)) == "DELIVERED"


async def test_each_caller_has_only_its_own_steps(fulfil: Fulfil) -> None:
    r = await fulfil.physical()
    calls: list[Awaitable[R.Redemption]] = [
        fulfil.gateway.StartPacking(fulfilment_pb2.StartPackingRequest(redemption_id=r.id)),
        fulfil.warehouse.AcceptReturn(fulfilment_pb2.AcceptReturnRequest(redemption_id=r.id)),
        fulfil.warehouse.RequestReturn(fulfilment_pb2.RequestReturnRequest(redemption_id=r.id)),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await call
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert status_name(await fulfil.get(r)) == "COMMITTED"
