"""FulfilmentService: the warehouse and the operator move a physical redemption on after
COMMITTED; the member (through the gateway) asks for a return."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flashsale.fulfilment import Fulfilment
from loyalty.v1 import fulfilment_pb2, fulfilment_pb2_grpc, redemption_pb2
from server import convert, convert_fulfilment

if TYPE_CHECKING:
    from server.services import Context


class FulfilmentService(fulfilment_pb2_grpc.FulfilmentServiceServicer):
    def __init__(self, fulfilment: Fulfilment) -> None:
        self._fulfilment = fulfilment

    async def StartPacking(
        self, request: fulfilment_pb2.StartPackingRequest, context: Context
    ) -> redemption_pb2.Redemption:
        return convert.redemption(
            await self._fulfilment.start_packing(
                redemption_id=request.redemption_id, note=request.note
            )
        )

    async def MarkShipped(
        self, request: fulfilment_pb2.MarkShippedRequest, context: Context
    ) -> redemption_pb2.Redemption:
        return convert.redemption(
            await self._fulfilment.mark_shipped(
                redemption_id=request.redemption_id,
                carrier=request.carrier,
                tracking_number=request.tracking_number,
                shipped_at=convert.optional_time("shipped_at", request, "shipped_at"),
            )
        )

    async def MarkDelivered(
        self, request: fulfilment_pb2.MarkDeliveredRequest, context: Context
    ) -> redemption_pb2.Redemption:
        return convert.redemption(
            await self._fulfilment.mark_delivered(
                redemption_id=request.redemption_id,
                delivered_at=convert.optional_time("delivered_at", request, "delivered_at"),
            )
        )

    async def RequestReturn(
        self, request: fulfilment_pb2.RequestReturnRequest, context: Context
    ) -> redemption_pb2.Redemption:
        return convert.redemption(
            await self._fulfilment.request_return(
                redemption_id=request.redemption_id,
                member_id=request.member_id,
                reason=request.reason,
            )
        )

    async def AcceptReturn(
        self, request: fulfilment_pb2.AcceptReturnRequest, context: Context
    ) -> redemption_pb2.Redemption:
        return convert.redemption(
            await self._fulfilment.accept_return(
                redemption_id=request.redemption_id,
                disposition=convert_fulfilment.disposition(request.disposition),
                cash_refund_cents=request.cash_refund_cents,
                exchange=request.exchange,
                note=request.note,
            )
        )

    async def RejectReturn(
        self, request: fulfilment_pb2.RejectReturnRequest, context: Context
    ) -> redemption_pb2.Redemption:
        return convert.redemption(
            await self._fulfilment.reject_return(
                redemption_id=request.redemption_id, reason=request.reason
            )
        )
