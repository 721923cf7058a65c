"""protobuf <-> domain objects for CodeService (inventory/codes.py)."""

from __future__ import annotations

from inventory.codes import CodeInfo, CodePool, CodeStatus, Imported, RejectReason
from loyalty.v1 import codes_pb2
from server.convert import timestamp

_REASON_TO_PB = {
    RejectReason.EMPTY: codes_pb2.REJECT_REASON_EMPTY,
    RejectReason.TOO_LONG: codes_pb2.REJECT_REASON_TOO_LONG,
    RejectReason.NOT_PRINTABLE: codes_pb2.REJECT_REASON_NOT_PRINTABLE,
    RejectReason.DUPLICATE_IN_FILE: codes_pb2.REJECT_REASON_DUPLICATE_IN_FILE,
    RejectReason.ALREADY_LOADED: codes_pb2.REJECT_REASON_ALREADY_LOADED,
}
_STATUS_TO_PB = {
    CodeStatus.AVAILABLE: codes_pb2.CODE_STATUS_AVAILABLE,
    CodeStatus.ISSUED: codes_pb2.CODE_STATUS_ISSUED,
    CodeStatus.CONSUMED: codes_pb2.CODE_STATUS_CONSUMED,
    CodeStatus.REVOKED: codes_pb2.CODE_STATUS_REVOKED,
}


def imported(value: Imported) -> codes_pb2.ImportCodesResponse:
    return codes_pb2.ImportCodesResponse(
        item_id=value.item_id,
        loaded=value.loaded,
        rejected=value.rejected,
        remaining=value.remaining,
        rejected_lines=[
            codes_pb2.RejectedLine(line=r.line, reason=_REASON_TO_PB[r.reason])
            for r in value.rejected_lines
        ],
    )


def pool(value: CodePool) -> codes_pb2.CodePool:
    return codes_pb2.CodePool(
        item_id=value.item_id,
        loaded=value.loaded,
        available=value.available,
        issued=value.issued,
        consumed=value.consumed,
        revoked=value.revoked,
    )


def info(value: CodeInfo) -> codes_pb2.CodeInfo:
    return codes_pb2.CodeInfo(
        item_id=value.item_id,
        code=value.code,
        status=_STATUS_TO_PB[value.status],
        consumable=value.consumable,
        redemption_id=value.redemption_id or "",
        member_id=value.member_id or "",
        issue_time=timestamp(value.issued_at),
        consume_time=timestamp(value.consumed_at),
        merchant_id=value.merchant_id or "",
    )
