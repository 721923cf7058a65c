"""Protobuf for a redemption's fulfilment: its history, shipment, return and exchange links
(filled into the Redemption message by server.convert.redemption), and the
FulfilmentService's request enums."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from common.errors import InvalidArgument
from flashsale.model import Redemption, RedemptionStatus, ReturnDisposition
from loyalty.v1 import redemption_pb2

STATUS_TO_PB = {
    RedemptionStatus.PENDING_PAYMENT: redemption_pb2.REDEMPTION_STATUS_PENDING_PAYMENT,
    RedemptionStatus.COMMITTED: redemption_pb2.REDEMPTION_STATUS_COMMITTED,
    RedemptionStatus.CANCELLED: redemption_pb2.REDEMPTION_STATUS_CANCELLED,
    RedemptionStatus.EXPIRED: redemption_pb2.REDEMPTION_STATUS_EXPIRED,
    RedemptionStatus.PACKING: redemption_pb2.REDEMPTION_STATUS_PACKING,
    RedemptionStatus.SHIPPED: redemption_pb2.REDEMPTION_STATUS_SHIPPED,
    RedemptionStatus.DELIVERED: redemption_pb2.REDEMPTION_STATUS_DELIVERED,
    RedemptionStatus.RETURN_REQUESTED: redemption_pb2.REDEMPTION_STATUS_RETURN_REQUESTED,
    RedemptionStatus.RETURNED: redemption_pb2.REDEMPTION_STATUS_RETURNED,
    RedemptionStatus.RETURN_REJECTED: redemption_pb2.REDEMPTION_STATUS_RETURN_REJECTED,
}

_DISPOSITION_TO_PB = {
    ReturnDisposition.RESTOCK: redemption_pb2.RETURN_DISPOSITION_RESTOCK,
    ReturnDisposition.WRITE_OFF: redemption_pb2.RETURN_DISPOSITION_WRITE_OFF,
}
_DISPOSITION_FROM_PB = {v: k for k, v in _DISPOSITION_TO_PB.items()}


def disposition(value: int) -> ReturnDisposition | None:
    """UNSPECIFIED is None (the use case says it is required); an unknown number is bad."""
    if value == redemption_pb2.RETURN_DISPOSITION_UNSPECIFIED:
        return None
    found: ReturnDisposition | None = _DISPOSITION_FROM_PB.get(value)  # type: ignore[call-overload]
    if found is None:
        raise InvalidArgument("disposition", f"unknown return disposition {value}")
    return found


def fill(message: redemption_pb2.Redemption, value: Redemption) -> None:
    for entry in value.history:
        message.history.append(
            redemption_pb2.RedemptionHistoryEntry(
                status=STATUS_TO_PB[entry.status],
                time=_ts(entry.at),
                actor=entry.actor,
                note=entry.note,
            )
        )
    if value.shipment is not None:
        message.shipment.CopyFrom(
            redemption_pb2.Shipment(
                carrier=value.shipment.carrier,
                tracking_number=value.shipment.tracking_number,
                shipped_at=_ts(value.shipment.shipped_at),
            )
        )
    if value.delivered_at is not None:
        message.delivered_at.CopyFrom(_ts(value.delivered_at))
    info = value.return_info
    if info is not None:
        message.return_info.CopyFrom(
            redemption_pb2.ReturnInfo(
                reason=info.reason,
                requested_at=_ts(info.requested_at),
                resolved_at=_ts(info.resolved_at) if info.resolved_at else None,
                disposition=_DISPOSITION_TO_PB[info.disposition]
                if info.disposition
                else redemption_pb2.RETURN_DISPOSITION_UNSPECIFIED,
                cash_refund_cents=info.cash_refund_cents,
                rejection_reason=info.rejection_reason,
            )
        )
    message.replacement_of = value.replacement_of or ""
    message.replaced_by = value.replaced_by or ""


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts
