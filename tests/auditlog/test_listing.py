"""ListAuditEvents: newest first, paged, filtered by subject, action, target and time; a bad
filter is INVALID_ARGUMENT naming its field. Open to the operator and reports scopes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest

from common import paging
from common.actor import Actor, acting_as
from loyalty.v1 import audit_pb2
from server import scopes
from tests.auditlog.helpers import events, trail
from tests.conftest import TEST_SUBJECT, Running
from tests.factories import failure, ts


async def _seed(running: Running) -> dict[str, str]:
    """8 events: an item created through the channel (TEST_SUBJECT), five stock adjustments
    by ops:ann, a freeze and an unfreeze by ops:bob (the domain called as those actors)."""
    api, app = running.api, running.app
    item = await api.item(stock=100)
    member = await api.member()
    with acting_as(Actor("ops:ann", "req-ann")):
        for n in range(5):
            await app.catalog.adjust_stock(
                item_id=item.id, delta=1, reason="restock", idempotency_key=f"adj-{n}"
            )
    with acting_as(Actor("ops:bob", "req-bob")):
        await app.points.members.freeze(member_id=member.id, reason="fraud", operator_id="")
        await app.points.members.unfreeze(member_id=member.id, reason="cleared", operator_id="")
    return {"item": item.id, "member": member.id}


async def test_events_come_newest_first_page_by_page(server: Running) -> None:
    await _seed(server)

    everything = await events(server)
    pages: list[list[audit_pb2.AuditEvent]] = []
    token = ""
    while True:
        page = await trail(server).ListAuditEvents(
            audit_pb2.ListAuditEventsRequest(page_size=3, page_token=token)
        )
        pages.append(list(page.events))
        token = page.next_page_token
        if not token:
            break
    default = await trail(server).ListAuditEvents(audit_pb2.ListAuditEventsRequest())

    assert [len(p) for p in pages] == [3, 3, 2]
    assert [e for p in pages for e in p] == everything
    assert len({e.id for e in everything}) == 8
    times = [e.create_time.ToDatetime() for e in everything]
    assert times == sorted(times, reverse=True)
    assert [e.action for e in everything] == [
        "member.unfreeze_member",
        "member.freeze_member",
        *["catalog.adjust_stock"] * 5,
        "catalog.create_item",
    ]
    assert (len(default.events), default.next_page_token) == (8, "")  # 20 a page by default


async def test_filters_by_subject_action_target_and_time(server: Running) -> None:
    ids = await _seed(server)

    async def actions(**filters: Any) -> list[str]:
        return [e.action for e in await events(server, **filters)]

    assert await actions(subject="ops:ann") == ["catalog.adjust_stock"] * 5
    assert await actions(subject=TEST_SUBJECT) == ["catalog.create_item"]
    assert await actions(subject="ops:nobody") == []
    assert await actions(action="member.freeze_member") == ["member.freeze_member"]
    assert await actions(target_id=ids["member"]) == [
        "member.unfreeze_member",
        "member.freeze_member",
    ]
    assert len(await actions(target_id=ids["item"])) == 6
    assert await actions(subject="ops:ann", target_id=ids["member"]) == []
    assert await actions(subject="ops:bob", action="member.unfreeze_member") == [
        "member.unfreeze_member"
    ]
    assert {e.request_id for e in await events(server, subject="ops:bob")} == {"req-bob"}

    everything = await events(server)
    cut = everything[2].create_time  # [start, end): the cut splits the trail in two
    later = await events(server, start_time=cut)
    earlier = await events(server, end_time=cut)
    assert later + earlier == everything
    assert later[-1] == everything[2]
    window = await events(
        server, start_time=everything[-1].create_time, end_time=everything[0].create_time
    )
    assert window == everything[1:]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action": "catalog.sell_everything"}, "action"),
        ({"subject": "ops:\nann"}, "subject"),
        ({"subject": "s" * 257}, "subject"),
        ({"target_id": "t" * 129}, "target_id"),
        ({"page_size": 101}, "page_size"),
        ({"page_size": -1}, "page_size"),
        ({"page_token": "not a token"}, "page_token"),
        ({"page_token": paging.encode(datetime(2026, 1, 1), "not-an-id")}, "page_token"),
        ({"start_time": ts(datetime(2026, 1, 2))}, None),
        (
            {
                "start_time": ts(datetime(2026, 1, 2)),
                "end_time": ts(datetime(2026, 1, 2) - timedelta(seconds=1)),
            },
            "end_time",
        ),
    ],
)
async def test_a_bad_filter_is_invalid_argument_naming_it(
    server: Running, fields: dict[str, Any], field: str | None
) -> None:
    request = audit_pb2.ListAuditEventsRequest(**fields)
    if field is None:  # the control: a good filter of the same shape passes
        await trail(server).ListAuditEvents(request)
        return
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await trail(server).ListAuditEvents(request)
    assert (failure(bad.value).code, failure(bad.value).field) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        field,
    )


def test_the_trail_is_open_to_operators_and_reports() -> None:
    assert scopes.needed_for("/loyalty.v1.AuditService/ListAuditEvents") == {
        scopes.OPERATOR,
        scopes.REPORTS,
    }
    for service in audit_pb2.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            assert scopes.needed_for(f"/{service.full_name}/{method.name}"), method.name
