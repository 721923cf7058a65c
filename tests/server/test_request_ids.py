"""Request ids for CreateItem and CreateCampaign (AIP-155, issue 17 item 5; members are in
tests/points/test_member_ids.py): a retry answers the resource the first attempt made, its
stock moved and its audit event written once; the same id for another request is
ALREADY_EXISTS / REQUEST_ID_REUSED naming it; racing retries make one; a taken SKU names
the item that has it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from auditlog import CREATE_CAMPAIGN, CREATE_ITEM
from loyalty.v1 import campaign_pb2, catalog_pb2, common_pb2, member_pb2
from tests.conftest import Running
from tests.factories import failure, ts
from tests.lottery.helpers import pg_rows


def item_request(
    sku: str = "mug-1", rid: str = "", stock: int = 7
) -> catalog_pb2.CreateItemRequest:
    return catalog_pb2.CreateItemRequest(
        sku=sku,
        name="Mug",
        kind=common_pb2.ITEM_KIND_VIRTUAL,
        initial_stock=stock,
        variant_attributes={},
        request_id=rid,
    )


_STARTS = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)


def campaign_request(
    item_id: str, rid: str, *, units: int = 5, price: int = 100
) -> campaign_pb2.CreateCampaignRequest:
    return campaign_pb2.CreateCampaignRequest(
        item_id=item_id,
        name="Mug day",
        units_allotted=units,
        points_price=price,
        per_member_limit=1,
        starts_at=ts(_STARTS),
        ends_at=ts(_STARTS + timedelta(hours=1)),
        request_id=rid,
    )


def audit_count(server: Running, action: str) -> int:
    return int(pg_rows(server, "SELECT count(*) FROM audit_events WHERE action = %s", action)[0][0])


def levels(server: Running, item_id: str) -> tuple[int, int, int]:
    """(the item's stock_on_hand: what campaigns may still take, on hand and allotted at
    its locations)."""
    return pg_rows(
        server,
        "SELECT i.stock_on_hand, sum(l.on_hand)::int, sum(l.allotted)::int FROM items i "
        "JOIN stock_levels l ON l.item_id = i.id WHERE i.id = %s GROUP BY i.stock_on_hand",
        item_id,
    )[0]


async def test_a_retried_create_item_answers_the_same_item_received_once(
    server: Running,
) -> None:
    catalog = server.api.catalog
    first = await catalog.CreateItem(item_request(rid="item-req-1"))
    again = await catalog.CreateItem(item_request(rid="item-req-1"))

    assert again == first
    assert pg_rows(server, "SELECT count(*) FROM items") == [(1,)]
    assert levels(server, first.id) == (7, 7, 0)
    assert pg_rows(server, "SELECT count(*) FROM stock_movements WHERE item_id = %s", first.id) == [
        (1,)
    ]
    assert audit_count(server, CREATE_ITEM) == 1


async def test_create_item_with_a_reused_request_id_names_the_first_item(
    server: Running,
) -> None:
    catalog = server.api.catalog
    first = await catalog.CreateItem(item_request(rid="item-req-2"))
    changed = [item_request(rid="item-req-2", stock=8), item_request("mug-2", "item-req-2")]
    described = item_request(rid="item-req-2")
    described.description = "a bigger mug"
    for request in [*changed, described]:
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            await catalog.CreateItem(request)
        f = failure(reused.value)
        assert (f.code, f.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
        assert f.metadata == {
            "resource": "item",
            "field": "request_id",
            "request_id": "item-req-2",
            "item_id": first.id,
        }
    assert pg_rows(server, "SELECT count(*) FROM items") == [(1,)]
    assert audit_count(server, CREATE_ITEM) == 1


async def test_concurrent_create_item_retries_make_one_item(server: Running) -> None:
    results = await asyncio.gather(
        *(server.api.catalog.CreateItem(item_request(rid="item-req-3")) for _ in range(10))
    )
    assert len({r.id for r in results}) == 1
    assert levels(server, results[0].id) == (7, 7, 0)
    assert audit_count(server, CREATE_ITEM) == 1


async def test_a_taken_sku_names_the_item_that_has_it(server: Running) -> None:
    catalog = server.api.catalog
    first = await catalog.CreateItem(item_request("mug-3"))
    for second in (item_request("mug-3"), item_request("mug-3", "item-req-4", stock=1)):
        with pytest.raises(grpc.aio.AioRpcError) as dup:
            await catalog.CreateItem(second)
        f = failure(dup.value)
        assert (f.code, f.reason) == (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
        assert f.metadata == {"resource": "item", "field": "sku", "item_id": first.id}
    assert pg_rows(server, "SELECT count(*) FROM create_requests") == [(0,)]
    assert levels(server, first.id) == (7, 7, 0)


async def test_a_retried_create_campaign_answers_the_same_campaign_allotted_once(
    server: Running,
) -> None:
    api = server.api
    # Stock for one allotment only: a second would be INSUFFICIENT_STOCK.
    item = await api.catalog.CreateItem(item_request("mug-4", stock=5))
    first = await api.campaigns.CreateCampaign(campaign_request(item.id, "camp-req-1"))
    again = await api.campaigns.CreateCampaign(campaign_request(item.id, "camp-req-1"))

    assert again.id == first.id
    assert again.units_allotted == 5 and again.units_remaining == 5
    assert pg_rows(server, "SELECT count(*) FROM campaigns") == [(1,)]
    assert levels(server, item.id) == (0, 5, 5)
    assert audit_count(server, CREATE_CAMPAIGN) == 1


async def test_create_campaign_with_a_reused_request_id_names_the_first(
    server: Running,
) -> None:
    api = server.api
    item = await api.catalog.CreateItem(item_request("mug-5", stock=20))
    first = await api.campaigns.CreateCampaign(campaign_request(item.id, "camp-req-2"))
    later = campaign_request(item.id, "camp-req-2")
    later.ends_at.CopyFrom(ts(_STARTS + timedelta(hours=2)))
    for request in (campaign_request(item.id, "camp-req-2", price=90), later):
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            await api.campaigns.CreateCampaign(request)
        f = failure(reused.value)
        assert (f.code, f.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
        assert f.metadata["campaign_id"] == first.id
    assert levels(server, item.id) == (15, 20, 5)
    assert audit_count(server, CREATE_CAMPAIGN) == 1


async def test_concurrent_create_campaign_retries_make_one_campaign(server: Running) -> None:
    api = server.api
    item = await api.catalog.CreateItem(item_request("mug-6", stock=50))
    results = await asyncio.gather(
        *(api.campaigns.CreateCampaign(campaign_request(item.id, "camp-req-3")) for _ in range(10))
    )
    assert len({r.id for r in results}) == 1
    assert pg_rows(server, "SELECT count(*) FROM campaigns") == [(1,)]
    assert levels(server, item.id) == (45, 50, 5)
    assert audit_count(server, CREATE_CAMPAIGN) == 1


async def test_a_replayed_campaign_is_sold_like_the_first(server: Running) -> None:
    api = server.api
    item = await api.catalog.CreateItem(item_request("mug-7", stock=5))
    request = campaign_request(item.id, "camp-req-4")
    request.starts_at.CopyFrom(ts(datetime.now(UTC) - timedelta(minutes=1)))
    first = await api.campaigns.CreateCampaign(request)
    member = await api.member(points=100)
    await api.redeem(member.id, first.id)
    again = await api.campaigns.CreateCampaign(request)
    # The campaign as it is now: one unit sold, nothing allotted again.
    assert (again.id, again.units_committed, again.units_remaining) == (first.id, 1, 4)
    assert levels(server, item.id)[0] == 0
    assert pg_rows(server, "SELECT count(*) FROM campaigns") == [(1,)]


async def test_request_ids_are_per_kind_of_resource(server: Running) -> None:
    api = server.api
    item = await api.catalog.CreateItem(item_request("mug-8", "shared-id"))
    member = await api.members.CreateMember(
        member_pb2.CreateMemberRequest(display_name="Lu", request_id="shared-id")
    )
    campaign = await api.campaigns.CreateCampaign(campaign_request(item.id, "shared-id"))
    assert sorted(pg_rows(server, "SELECT kind, resource_id::text FROM create_requests")) == [
        ("campaign", campaign.id),
        ("item", item.id),
        ("member", member.id),
    ]


async def test_a_bad_request_id_names_the_field_and_creates_nothing(server: Running) -> None:
    api = server.api
    item = await api.catalog.CreateItem(item_request("mug-9"))
    for call in (
        api.catalog.CreateItem(item_request("mug-10", "x" * 129)),
        api.campaigns.CreateCampaign(campaign_request(item.id, "bad\nid")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await call
        f = failure(bad.value)
        assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, "request_id")
    assert pg_rows(server, "SELECT count(*) FROM items") == [(1,)]
    assert pg_rows(server, "SELECT count(*) FROM campaigns") == [(0,)]


async def test_a_variant_retried_with_its_attributes_in_another_order_is_a_replay(
    server: Running,
) -> None:
    catalog = server.api.catalog
    product = await catalog.CreateProduct(catalog_pb2.CreateProductRequest(name="Tee"))
    first_order = item_request("tee-m-red", "item-req-5")
    first_order.product_id = product.id
    first_order.variant_attributes.update({"size": "M", "colour": "red"})
    other_order = item_request("tee-m-red", "item-req-5")
    other_order.product_id = product.id
    other_order.variant_attributes.update({"colour": "red", "size": "M"})
    first = await catalog.CreateItem(first_order)
    again = await catalog.CreateItem(other_order)
    assert again.id == first.id
    other_order.variant_attributes["size"] = "L"
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await catalog.CreateItem(other_order)
    assert failure(reused.value).reason == "REQUEST_ID_REUSED"
