"""Protobuf <-> domain for AuditService and `surge audit-log` (auditlog/)."""

from __future__ import annotations

from google.protobuf.struct_pb2 import Struct

from auditlog import AuditEvent, AuditPage, AuditQuery
from loyalty.v1 import audit_pb2
from server.convert import optional_time, timestamp


def audit_query(request: audit_pb2.ListAuditEventsRequest) -> AuditQuery:
    return AuditQuery(
        subject=request.subject,
        action=request.action,
        target_id=request.target_id,
        start=optional_time("start_time", request, "start_time"),
        end=optional_time("end_time", request, "end_time"),
    )


def audit_event(value: AuditEvent) -> audit_pb2.AuditEvent:
    content = Struct()
    content.update(value.content)
    return audit_pb2.AuditEvent(
        id=value.id,
        create_time=timestamp(value.occurred_at),
        subject=value.subject,
        request_id=value.request_id,
        action=value.action,
        target_kind=value.target_kind,
        target_id=value.target_id,
        content=content,
    )


def audit_page(value: AuditPage) -> audit_pb2.ListAuditEventsResponse:
    return audit_pb2.ListAuditEventsResponse(
        events=[audit_event(e) for e in value.events], next_page_token=value.next_page_token
    )
