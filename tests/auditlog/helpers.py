"""Reading the audit trail through the real channel, and naming the calls that write it."""

from __future__ import annotations

import uuid
from typing import Any

from google.protobuf import json_format

from loyalty.v1 import audit_pb2, audit_pb2_grpc
from server.interceptors import REQUEST_ID_HEADER
from tests.conftest import Running

Metadata = tuple[tuple[str, str], ...]


def request_id() -> str:
    return "req-" + uuid.uuid4().hex


def sent_as(rid: str) -> Metadata:
    """The metadata of a call that sends this x-request-id."""
    return ((REQUEST_ID_HEADER, rid),)


def trail(running: Running) -> audit_pb2_grpc.AuditServiceAsyncStub:
    return audit_pb2_grpc.AuditServiceStub(running.channel)


async def events(running: Running, **filters: Any) -> list[audit_pb2.AuditEvent]:
    """Every event matching the filters (ListAuditEvents fields), newest first, page by
    page."""
    found: list[audit_pb2.AuditEvent] = []
    token = ""
    while True:
        page = await trail(running).ListAuditEvents(
            audit_pb2.ListAuditEventsRequest(page_size=100, page_token=token, **filters)
        )
        found += page.events
        token = page.next_page_token
        if not token:
            return found


def content(event: audit_pb2.AuditEvent) -> dict[str, Any]:
    """The event's content as plain JSON values (numbers as floats: 3 == 3.0)."""
    return json_format.MessageToDict(event.content)
