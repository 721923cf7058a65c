"""`--json` output of the CLI uses the API's field names: its keys are the proto message's
fields, as the descriptor has them, at every level."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from auditlog import AuditEvent
from loyalty.v1 import audit_pb2, member_pb2
from points.liability import Flows, LiabilityReport
from server import cli_audit_log, convert

WELL_KNOWN = {"google.protobuf.Timestamp", "google.protobuf.Struct"}  # JSON scalars / objects


def assert_keys_are_fields(data: dict[str, Any], descriptor: Descriptor) -> None:
    assert set(data) == {f.name for f in descriptor.fields}, descriptor.full_name
    for f in descriptor.fields:
        nested = f.message_type
        if f.type != FieldDescriptor.TYPE_MESSAGE or nested is None:
            continue
        if nested.full_name in WELL_KNOWN:
            continue
        values = data[f.name] if f.is_repeated else [data[f.name]]
        assert values, f.name  # the test's data fills every repeated field
        for value in values:
            assert_keys_are_fields(value, nested)


def test_liability_report_json_is_get_liability_reports_response() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    flows = Flows(start, issued=1200, redeemed=300, expired=5, reversed=7, adjusted=-2)
    report = LiabilityReport(
        as_of=datetime(2026, 2, 1, 8, 30, tzinfo=UTC),
        outstanding=893,
        by_expiry_month=[("2027-01", 893)],
        debt=4,
        periods=[flows],
        totals=flows,
        redemption_rate=0.25,
        breakage_estimate=670,
        pending=120,
        next_pending_activation=datetime(2026, 2, 15, tzinfo=UTC),
    )
    response = (
        member_pb2.DESCRIPTOR.services_by_name["MemberService"]
        .methods_by_name["GetLiabilityReport"]
        .output_type
    )

    text = convert.to_json(convert.liability_report(report), indent=2)
    data = json.loads(text)

    assert response.full_name == "loyalty.v1.LiabilityReport"
    assert_keys_are_fields(data, response)
    assert data["outstanding_points"] == "893"  # int64: a JSON string, as proto3 JSON has it
    assert data["as_of"] == "2026-02-01T08:30:00Z"
    assert data["periods"][0]["transferred"] == "0"  # defaults are printed too
    assert json_format.Parse(text, member_pb2.LiabilityReport()) == convert.liability_report(report)


def test_audit_log_json_is_list_audit_events_event() -> None:
    event = AuditEvent(
        id="7d0b3f55-0000-4000-8000-000000000001",
        occurred_at=datetime(2026, 2, 1, 8, 30, 1, 250000, tzinfo=UTC),
        subject="ops:ann",
        request_id="req-1",
        action="catalog.adjust_stock",
        target_kind="item",
        target_id="4b1c0000-0000-4000-8000-000000000002",
        content={"delta": 2, "reason": "restock"},
    )
    listed = (
        audit_pb2.DESCRIPTOR.services_by_name["AuditService"]
        .methods_by_name["ListAuditEvents"]
        .output_type
    )

    data = json.loads(cli_audit_log.as_json(event))

    event_type = listed.fields_by_name["events"].message_type
    assert event_type is not None
    assert_keys_are_fields(data, event_type)
    assert data["create_time"] == "2026-02-01T08:30:01.250Z"
    assert data["content"] == {"delta": 2, "reason": "restock"}
