"""Steps shared by the fulfilment tests: a physical redemption, moved along the path with
fixed arguments (so a repeat is "the same arguments"), and the rows a step writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from loyalty.v1 import (
    common_pb2,
    fulfilment_pb2,
    fulfilment_pb2_grpc,
    redemption_pb2,
)
from tests import auth
from tests.conftest import Running
from tests.factories import ADDRESS

R = redemption_pb2
PHYSICAL = common_pb2.ITEM_KIND_PHYSICAL
CARRIER, TRACKING = "SF Express", "SF1234567890"
RETURN_REASON, REJECTION = "too small", "worn, not resellable"


@dataclass
class Fulfil:
    """Stubs for the warehouse (subject wms-1), the operator (ops:alice) and the gateway
    (the test channel), each with only its own scopes."""

    running: Running
    warehouse: fulfilment_pb2_grpc.FulfilmentServiceAsyncStub
    operator: fulfilment_pb2_grpc.FulfilmentServiceAsyncStub
    gateway: fulfilment_pb2_grpc.FulfilmentServiceAsyncStub
    channels: list[grpc.aio.Channel]

    @classmethod
    def on(cls, running: Running) -> Fulfil:
        target = f"127.0.0.1:{running.app.port}"
        wms = auth.channel(target, auth.token(["fulfilment"], subject="wms-1"))
        ops = auth.channel(target, auth.token(["operator"], subject="ops:alice"))
        gw = auth.channel(target, auth.token(["storefront"], subject="gateway-eu"))
        return cls(
            running,
            fulfilment_pb2_grpc.FulfilmentServiceStub(wms),
            fulfilment_pb2_grpc.FulfilmentServiceStub(ops),
            fulfilment_pb2_grpc.FulfilmentServiceStub(gw),
            [wms, ops, gw],
        )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def physical(
        self, *, units: int = 5, points_price: int = 300, quantity: int = 1, **extra: Any
    ) -> R.Redemption:
        api = self.running.api
        campaign = await api.campaign(
            units=units, points_price=points_price, kind=PHYSICAL, **extra
        )
        member = await api.member(points=1000)
        return (
            await api.redeem(member.id, campaign.id, quantity=quantity, shipping_address=ADDRESS)
        ).redemption

    async def get(self, redemption: R.Redemption) -> R.Redemption:
        return await self.running.api.redemptions.GetRedemption(
            R.GetRedemptionRequest(redemption_id=redemption.id, member_id=redemption.member_id)
        )

    # The steps, with fixed arguments.
    async def pack(self, r: R.Redemption) -> R.Redemption:
        return await self.warehouse.StartPacking(
            fulfilment_pb2.StartPackingRequest(redemption_id=r.id, note="picked")
        )

    async def ship(self, r: R.Redemption) -> R.Redemption:
        return await self.warehouse.MarkShipped(
            fulfilment_pb2.MarkShippedRequest(
                redemption_id=r.id, carrier=CARRIER, tracking_number=TRACKING
            )
        )

    async def deliver(self, r: R.Redemption, **extra: Any) -> R.Redemption:
        return await self.warehouse.MarkDelivered(
            fulfilment_pb2.MarkDeliveredRequest(redemption_id=r.id, **extra)
        )

    async def request_return(self, r: R.Redemption) -> R.Redemption:
        return await self.gateway.RequestReturn(
            fulfilment_pb2.RequestReturnRequest(
                redemption_id=r.id, member_id=r.member_id, reason=RETURN_REASON
            )
        )

    async def accept(
        self,
        r: R.Redemption,
        disposition: R.ReturnDisposition.ValueType = R.RETURN_DISPOSITION_RESTOCK,
        **extra: Any,
    ) -> R.Redemption:
        return await self.operator.AcceptReturn(
            fulfilment_pb2.AcceptReturnRequest(redemption_id=r.id, disposition=disposition, **extra)
        )

    async def reject(self, r: R.Redemption) -> R.Redemption:
        return await self.operator.RejectReturn(
            fulfilment_pb2.RejectReturnRequest(redemption_id=r.id, reason=REJECTION)
        )

    async def cancel(self, r: R.Redemption) -> R.Redemption:
        return await self.running.api.redemptions.CancelRedemption(
            R.CancelRedemptionRequest(redemption_id=r.id, member_id=r.member_id, reason="no")
        )

    async def advance_to(self, status: str) -> R.Redemption:
        """A fresh physical redemption in `status` (COMMITTED, PACKING, ..., CANCELLED)."""
        r = await self.physical()
        path = {
            "COMMITTED": [],
            "CANCELLED": [self.cancel],
            "PACKING": [self.pack],
            "SHIPPED": [self.pack, self.ship],
            "DELIVERED": [self.pack, self.ship, self.deliver],
            "RETURN_REQUESTED": [self.pack, self.ship, self.deliver, self.request_return],
            "RETURNED": [self.pack, self.ship, self.deliver, self.request_return, self.accept],
            "RETURN_REJECTED": [
                self.pack,
                self.ship,
                self.deliver,
                self.request_return,
                self.reject,
            ],
        }[status]
        for step in path:
            r = await step(r)
        assert R.RedemptionStatus.Name(r.status) == f"REDEMPTION_STATUS_{status}"
        return r

    async def events_of(self, redemption_id: str) -> list[tuple[str, str | None]]:
        async with self.running.app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT type, actor FROM events WHERE subject_id = %s ORDER BY sequence",
                (redemption_id,),
            )
            return [(t, a) for t, a in await cur.fetchall()]

    async def audit_of(self, redemption_id: str) -> list[tuple[str, str]]:
        async with self.running.app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT action, subject FROM audit_events WHERE target_id = %s ORDER BY id",
                (redemption_id,),
            )
            return [(a, s) for a, s in await cur.fetchall()]

    async def stock(self, item_id: str) -> int:
        async with self.running.app.pool.connection() as conn:
            cur = await conn.execute("SELECT stock_on_hand FROM items WHERE id = %s", (item_id,))
            found = await cur.fetchone()
            assert found is not None
            return int(found[0])


def status_name(r: R.Redemption) -> str:
    return R.RedemptionStatus.Name(r.status).removeprefix("REDEMPTION_STATUS_")
