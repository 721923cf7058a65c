"""AuditService. Operators and auditors: the audit trail of operator changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from auditlog import AuditTrail
from loyalty.v1 import audit_pb2, audit_pb2_grpc
from server import convert_audit

if TYPE_CHECKING:
    from server.services import Context


class AuditService(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, trail: AuditTrail) -> None:
        self._trail = trail

    async def ListAuditEvents(
        self, request: audit_pb2.ListAuditEventsRequest, context: Context
    ) -> audit_pb2.ListAuditEventsResponse:
        page = await self._trail.events(
            convert_audit.audit_query(request),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return convert_audit.audit_page(page)
