"""Every operator change, made through the real channel with an x-request-id, leaves exactly
one audit event: its action and target, the credential's subject, the request id and the
request. A replay, a refusal, and a call that changes nothing leave none."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from loyalty.v1 import campaign_pb2, catalog_pb2, common_pb2, member_pb2
from tests.auditlog.helpers import Metadata, content, events, request_id, sent_as
from tests.conftest import TEST_SUBJECT, Running
from tests.factories import Api, failure, key, ts


@dataclass(frozen=True)
class Expected:
    action: str
    target_kind: str
    target_id: str
    content: dict[str, Any]


async def create_item(api: Api, sent: Metadata) -> Expected:
    sku = "MUG-" + uuid.uuid4().hex[:8]
    item = await api.catalog.CreateItem(
        catalog_pb2.CreateItemRequest(
            sku=sku, name="Mug", kind=common_pb2.ITEM_KIND_PHYSICAL, initial_stock=7
        ),
        metadata=sent,
    )
    return Expected(
        "catalog.create_item",
        "item",
        item.id,
        {
            "sku": sku,
            "name": "Mug",
            "kind": "PHYSICAL",
            "initial_stock": 7,
            "code_source": "GENERATED",
        },
    )


async def adjust_stock(api: Api, sent: Metadata) -> Expected:
    item = await api.item(stock=5)
    idem = key()
    await api.catalog.AdjustStock(
        catalog_pb2.AdjustStockRequest(
            item_id=item.id, delta=-3, reason="breakage", idempotency_key=idem
        ),
        metadata=sent,
    )
    return Expected(
        "catalog.adjust_stock",
        "item",
        item.id,
        {"item_id": item.id, "delta": -3, "reason": "breakage", "idempotency_key": idem},
    )


async def create_campaign(api: Api, sent: Metadata) -> Expected:
    item = await api.item(stock=10)
    starts = datetime.now(UTC) - timedelta(minutes=1)
    ends = starts + timedelta(hours=2)
    campaign = await api.campaigns.CreateCampaign(
        campaign_pb2.CreateCampaignRequest(
            item_id=item.id,
            name="Night sale",
            units_allotted=4,
            points_price=300,
            cash_price_cents=150,
            per_member_limit=2,
            starts_at=ts(starts),
            ends_at=ts(ends),
        ),
        metadata=sent,
    )
    return Expected(
        "campaign.create_campaign",
        "campaign",
        campaign.id,
        {
            "item_id": item.id,
            "name": "Night sale",
            "units_allotted": 4,
            "points_price": 300,
            "cash_price_cents": 150,
            "per_member_limit": 2,
            "starts_at": starts.isoformat(),
            "ends_at": ends.isoformat(),
            "stock_shards": 1,  # the default, recorded as decided
        },
    )


async def update_campaign(api: Api, sent: Metadata) -> Expected:
    campaign = await api.campaign(units=4, limit=2, points_price=300)
    await api.campaigns.UpdateCampaign(
        campaign_pb2.UpdateCampaignRequest(
            campaign=campaign_pb2.Campaign(
                id=campaign.id, units_allotted=3, per_member_limit=2, name="Late sale"
            ),
            update_mask=field_mask_pb2.FieldMask(
                paths=["units_allotted", "per_member_limit", "name"]
            ),
        ),
        metadata=sent,
    )
    return Expected(
        "campaign.update_campaign",
        "campaign",
        campaign.id,
        {
            "update_mask": ["name", "per_member_limit", "units_allotted"],
            "changed": {"name": "Late sale", "units_allotted": 3},
            "previous": {"name": "Holiday surge", "units_allotted": 4},
        },
    )


async def end_campaign(api: Api, sent: Metadata) -> Expected:
    campaign = await api.campaign(units=4)
    ended = await api.campaigns.EndCampaign(
        campaign_pb2.EndCampaignRequest(campaign_id=campaign.id), metadata=sent
    )
    return Expected(
        "campaign.end_campaign",
        "campaign",
        campaign.id,
        {
            "ends_at": ended.ends_at.ToDatetime(tzinfo=UTC).isoformat(),
            "units_returned": 4,
            "units_allotted": 0,
            "previous": {
                "ends_at": campaign.ends_at.ToDatetime(tzinfo=UTC).isoformat(),
                "units_allotted": 4,
            },
        },
    )


async def adjust_points(api: Api, sent: Metadata) -> Expected:
    member = await api.member(points=100)
    idem = key()
    await api.members.AdjustPoints(
        member_pb2.AdjustPointsRequest(
            member_id=member.id,
            delta=-40,
            reason="clawback",
            operator_id="op-7",
            idempotency_key=idem,
        ),
        metadata=sent,
    )
    return Expected(
        "member.adjust_points",
        "member",
        member.id,
        {
            "member_id": member.id,
            "delta": -40,
            "reason": "clawback",
            "operator_id": "op-7",
            "idempotency_key": idem,
        },
    )


async def freeze_member(api: Api, sent: Metadata) -> Expected:
    member = await api.member()
    await api.members.FreezeMember(
        member_pb2.FreezeMemberRequest(member_id=member.id, reason="fraud", operator_id="op-7"),
        metadata=sent,
    )
    return Expected(
        "member.freeze_member",
        "member",
        member.id,
        {"member_id": member.id, "reason": "fraud", "operator_id": "op-7"},
    )


async def unfreeze_member(api: Api, sent: Metadata) -> Expected:
    member = await api.member()
    await api.members.FreezeMember(
        member_pb2.FreezeMemberRequest(member_id=member.id, reason="fraud", operator_id="op-7")
    )
    await api.members.UnfreezeMember(
        member_pb2.UnfreezeMemberRequest(member_id=member.id, reason="cleared"),
        metadata=sent,
    )
    return Expected(
        "member.unfreeze_member",
        "member",
        member.id,
        {"member_id": member.id, "reason": "cleared", "operator_id": None},
    )


async def set_manual_tier(api: Api, sent: Metadata) -> Expected:
    member = await api.member()
    await api.members.SetManualTier(
        member_pb2.SetManualTierRequest(
            member_id=member.id, tier="gold", reason="vip", operator_id="op-7"
        ),
        metadata=sent,
    )
    return Expected(
        "member.set_manual_tier",
        "member",
        member.id,
        {"member_id": member.id, "tier": "gold", "reason": "vip", "operator_id": "op-7"},
    )


async def evaluate_tier(api: Api, sent: Metadata) -> Expected:
    member = await api.member(points=60_000)  # past silver's 50,000
    status = await api.members.EvaluateTier(
        member_pb2.EvaluateTierRequest(member_id=member.id), metadata=sent
    )
    assert status.reached_tier == "silver"
    return Expected("member.evaluate_tier", "member", member.id, {"member_id": member.id})


CHANGES: dict[str, Callable[[Api, Metadata], Awaitable[Expected]]] = {
    "CreateItem": create_item,
    "AdjustStock": adjust_stock,
    "CreateCampaign": create_campaign,
    "UpdateCampaign": update_campaign,
    "EndCampaign": end_campaign,
    "AdjustPoints": adjust_points,
    "FreezeMember": freeze_member,
    "UnfreezeMember": unfreeze_member,
    "SetManualTier": set_manual_tier,
    "EvaluateTier": evaluate_tier,
}


@pytest.mark.parametrize("rpc", list(CHANGES))
async def test_an_operator_change_records_one_event_with_who_which_request_and_what(
    server: Running, rpc: str
) -> None:
    rid = request_id()
    before = datetime.now(UTC) - timedelta(seconds=5)  # PostgreSQL's clock, not ours
    expected = await CHANGES[rpc](server.api, sent_as(rid))

    found = await events(server, action=expected.action, target_id=expected.target_id)
    assert len(found) == 1, found
    [event] = found
    assert (event.subject, event.request_id, event.action) == (TEST_SUBJECT, rid, expected.action)
    assert (event.target_kind, event.target_id) == (expected.target_kind, expected.target_id)
    assert content(event) == expected.content
    assert before <= event.create_time.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)
    # The call wrote nothing else to the trail.
    assert [e.id for e in await events(server) if e.request_id == rid] == [event.id]


async def test_a_replayed_key_records_nothing_more(server: Running) -> None:
    api = server.api
    item = await api.item(stock=5)
    member = await api.member(points=100)
    stock = catalog_pb2.AdjustStockRequest(
        item_id=item.id, delta=2, reason="restock", idempotency_key="adj-1"
    )
    points = member_pb2.AdjustPointsRequest(
        member_id=member.id, delta=10, reason="goodwill", operator_id="op", idempotency_key="p-1"
    )
    first, again = request_id(), request_id()

    await api.catalog.AdjustStock(stock, metadata=sent_as(first))
    await api.members.AdjustPoints(points, metadata=sent_as(first))
    stock_replay = await api.catalog.AdjustStock(stock, metadata=sent_as(again))
    points_replay = await api.members.AdjustPoints(points, metadata=sent_as(again))

    assert stock_replay.replayed and points_replay.replayed
    trail = await events(server)
    assert sorted(e.action for e in trail if e.request_id == first) == [
        "catalog.adjust_stock",
        "member.adjust_points",
    ]
    assert [e for e in trail if e.request_id == again] == []


async def test_a_refused_change_records_nothing(server: Running) -> None:
    """The event is written in the change's transaction: a change refused (or rolled back)
    leaves no event."""
    api = server.api
    item = await api.item(stock=5)
    member = await api.member(points=100)
    await api.catalog.AdjustStock(
        catalog_pb2.AdjustStockRequest(
            item_id=item.id, delta=1, reason="restock", idempotency_key="adj-1"
        )
    )
    sku = (await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item.id))).sku
    starts = datetime.now(UTC)
    refusals: list[tuple[str, Callable[[Metadata], Awaitable[object]]]] = [
        (
            "INSUFFICIENT_STOCK",
            lambda sent: api.catalog.AdjustStock(
                catalog_pb2.AdjustStockRequest(
                    item_id=item.id, delta=-7, reason="breakage", idempotency_key="adj-2"
                ),
                metadata=sent,
            ),
        ),
        (
            "IDEMPOTENCY_KEY_REUSED",
            lambda sent: api.catalog.AdjustStock(
                catalog_pb2.AdjustStockRequest(
                    item_id=item.id, delta=2, reason="restock", idempotency_key="adj-1"
                ),
                metadata=sent,
            ),
        ),
        (
            "INSUFFICIENT_STOCK",  # 6 units on hand, 7 allotted
            lambda sent: api.campaigns.CreateCampaign(
                campaign_pb2.CreateCampaignRequest(
                    item_id=item.id,
                    name="Too big",
                    units_allotted=7,
                    points_price=10,
                    per_member_limit=1,
                    starts_at=ts(starts),
                    ends_at=ts(starts + timedelta(hours=1)),
                ),
                metadata=sent,
            ),
        ),
        (
            "INSUFFICIENT_POINTS",
            lambda sent: api.members.AdjustPoints(
                member_pb2.AdjustPointsRequest(
                    member_id=member.id,
                    delta=-101,
                    reason="clawback",
                    operator_id="op",
                    idempotency_key="p-1",
                ),
                metadata=sent,
            ),
        ),
        (
            "ALREADY_EXISTS",
            lambda sent: api.catalog.CreateItem(
                catalog_pb2.CreateItemRequest(
                    sku=sku, name="Twin", kind=common_pb2.ITEM_KIND_VIRTUAL
                ),
                metadata=sent,
            ),
        ),
        (
            "NOT_FOUND",
            lambda sent: api.members.FreezeMember(
                member_pb2.FreezeMemberRequest(member_id=str(uuid.uuid4()), reason="fraud"),
                metadata=sent,
            ),
        ),
    ]
    refused = request_id()
    reasons = []
    for _, call in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call(sent_as(refused))
        reasons.append(failure(error.value).reason)

    assert reasons == [reason for reason, _ in refusals]
    assert [e for e in await events(server) if e.request_id == refused] == []
    assert (await api.balance(member.id)).balance == 100


async def test_a_call_that_changes_nothing_records_nothing(server: Running) -> None:
    api = server.api
    member = await api.member(points=10)  # far below the first tier above base
    await api.members.FreezeMember(member_pb2.FreezeMemberRequest(member_id=member.id, reason="x"))
    idle = request_id()

    await api.members.FreezeMember(
        member_pb2.FreezeMemberRequest(member_id=member.id, reason="again"),
        metadata=sent_as(idle),
    )
    status = await api.members.EvaluateTier(
        member_pb2.EvaluateTierRequest(member_id=member.id), metadata=sent_as(idle)
    )

    assert status.reached_tier == "base"
    assert [e for e in await events(server) if e.request_id == idle] == []
    assert [e.action for e in await events(server, target_id=member.id)] == ["member.freeze_member"]
