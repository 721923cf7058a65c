"""`surge audit-log` reads the trail from the test database: filters, limit, JSON lines or
a line per event, and exit 2 on a bad filter."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

from loyalty.v1 import catalog_pb2, member_pb2
from server.app import Stores
from tests.auditlog.helpers import request_id, sent_as
from tests.cli import surge
from tests.conftest import TEST_SUBJECT, Running


def _surge(stores: Stores, *args: str) -> subprocess.CompletedProcess[str]:
    return surge(stores, "audit-log", *args)


async def test_the_cli_lists_the_trail(server: Running, clean: Stores) -> None:
    api = server.api
    item = await api.item(stock=5)
    member = await api.member()
    stock_rid, freeze_rid = request_id(), request_id()
    await api.catalog.AdjustStock(
        catalog_pb2.AdjustStockRequest(
            item_id=item.id, delta=2, reason="restock", idempotency_key="adj-1"
        ),
        metadata=sent_as(stock_rid),
    )
    await api.members.FreezeMember(
        member_pb2.FreezeMemberRequest(member_id=member.id, reason="fraud", operator_id="op-7"),
        metadata=sent_as(freeze_rid),
    )

    everything = _surge(clean, "--json")
    by_target = _surge(clean, "--json", "--target", item.id, "--action", "catalog.adjust_stock")
    newest = _surge(clean, "--json", "--limit", "1", "--subject", TEST_SUBJECT)
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    none_since = _surge(clean, "--json", "--since", later)
    table = _surge(clean, "--target", member.id)
    bad_since = _surge(clean, "--since", "yesterday")
    bad_action = _surge(clean, "--action", "catalog.sell_everything")

    for run in (everything, by_target, newest, none_since, table):
        assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in everything.stdout.splitlines()]
    assert [e["action"] for e in lines] == [
        "member.freeze_member",
        "catalog.adjust_stock",
        "catalog.create_item",
    ]
    [stock] = [json.loads(line) for line in by_target.stdout.splitlines()]
    assert (stock["subject"], stock["request_id"], stock["target_kind"], stock["target_id"]) == (
        TEST_SUBJECT,
        stock_rid,
        "item",
        item.id,
    )
    assert stock["content"] == {
        "item_id": item.id,
        "delta": 2,
        "reason": "restock",
        "idempotency_key": "adj-1",
    }
    assert datetime.fromisoformat(stock["create_time"]) <= datetime.now(UTC)
    assert [json.loads(line)["request_id"] for line in newest.stdout.splitlines()] == [freeze_rid]
    assert none_since.stdout == ""
    [event_line, summary] = table.stdout.splitlines()
    assert f"{TEST_SUBJECT}  {freeze_rid}  member.freeze_member  member:{member.id}" in event_line
    assert '"reason":"fraud"' in event_line
    assert summary == "1 event(s)"
    assert (bad_since.returncode, bad_action.returncode) == (2, 2)
    assert "--since" in bad_since.stderr and "action" in bad_action.stderr
