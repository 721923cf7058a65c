"""The catalogue through CatalogService: products and their variants, UpdateItem's field
mask, categories, and retiring an item (refused while a campaign lives; then no new
campaign). Each bad input is a clear error that changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from loyalty.v1 import campaign_pb2, catalog_pb2, common_pb2, redemption_pb2
from tests.conftest import TEST_SUBJECT, Running
from tests.factories import failure, ts
from tests.inventory.catalogue_helpers import all_pages, item, written


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def get(server: Running, item_id: str) -> catalog_pb2.Item:
    return await server.api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item_id))


async def test_variants_of_a_product_each_have_their_own_sku_and_stock(server: Running) -> None:
    api = server.api
    product = await api.catalog.CreateProduct(
        catalog_pb2.CreateProductRequest(
            name="Tea mug", description="Stoneware, 350 ml", category="home.kitchen"
        )
    )
    red_m = await item(
        api, sku="MUG-RED-M", stock=4, product_id=product.id,
        variant_attributes={"colour": "red", "size": "M"},
    )  # fmt: skip
    blue_l = await item(
        api, sku="MUG-BLUE-L", stock=9, product_id=product.id, category="home.gifts",
        variant_attributes={"colour": "blue", "size": "L"},
    )  # fmt: skip
    await item(api, sku="LONE-1")  # no product
    await api.catalog.AdjustStock(
        catalog_pb2.AdjustStockRequest(
            item_id=red_m.id, delta=-1, reason="breakage", idempotency_key="a-1"
        )
    )

    got = await api.catalog.GetProduct(catalog_pb2.GetProductRequest(product_id=product.id))

    assert got.product == product and product.category == "home.kitchen"
    assert [(v.sku, v.stock_on_hand) for v in got.variants] == [("MUG-BLUE-L", 9), ("MUG-RED-M", 3)]
    assert dict(got.variants[1].variant_attributes) == {"colour": "red", "size": "M"}
    # A variant without a category of its own takes the product's.
    assert (red_m.category, blue_l.category) == ("home.kitchen", "home.gifts")
    assert {v.product_id for v in got.variants} == {product.id}
    listed, _ = await all_pages(api, 10, product_id=product.id)
    assert [i.sku for i in listed] == ["MUG-BLUE-L", "MUG-RED-M"]
    actions, _ = await written(server.app.stores, product.id)
    assert actions == ["catalog.create_product"]


async def test_a_bad_variant_is_refused_and_creates_nothing(server: Running) -> None:
    api = server.api
    product = await api.catalog.CreateProduct(catalog_pb2.CreateProductRequest(name="Tee"))
    bad: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
        ({"variant_attributes": {"size": "M"}}, grpc.StatusCode.INVALID_ARGUMENT,
         "variant_attributes"),  # attributes without a product
        ({"product_id": str(uuid.uuid4())}, grpc.StatusCode.NOT_FOUND, ""),
        ({"product_id": "not-a-uuid"}, grpc.StatusCode.INVALID_ARGUMENT, "product_id"),
        ({"product_id": product.id, "variant_attributes": {f"k{i}": "v" for i in range(11)}},
         grpc.StatusCode.INVALID_ARGUMENT, "variant_attributes"),
        ({"product_id": product.id, "variant_attributes": {"Size": "M"}},
         grpc.StatusCode.INVALID_ARGUMENT, "variant_attributes"),
        ({"product_id": product.id, "variant_attributes": {"size": ""}},
         grpc.StatusCode.INVALID_ARGUMENT, "variant_attributes[size]"),
        ({"product_id": product.id, "variant_attributes": {"size": "x" * 65}},
         grpc.StatusCode.INVALID_ARGUMENT, "variant_attributes[size]"),
        ({"description": "x" * 2001}, grpc.StatusCode.INVALID_ARGUMENT, "description"),
    ]  # fmt: skip
    for details, code, field in bad:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await item(api, sku="TEE-1", **details)
        f = failure(refused.value)
        assert (f.code, f.field) == (code, field), details

    assert (await all_pages(api, 10))[0] == []
    got = await api.catalog.GetProduct(catalog_pb2.GetProductRequest(product_id=product.id))
    assert list(got.variants) == []


@pytest.mark.parametrize(
    "category",
    ["Home", "home..kitchen", "home.", ".home", "home kitchen", "home_kitchen", "-home",
     "home-", "home/kitchen", "c" * 101, "home\n"],
)  # fmt: skip
async def test_a_malformed_category_is_refused_naming_the_field(
    server: Running, category: str
) -> None:
    api = server.api
    existing = await item(api, sku="KEEP-1", category="home")
    with pytest.raises(grpc.aio.AioRpcError) as on_create:
        await item(api, sku="NEW-1", category=category)
    with pytest.raises(grpc.aio.AioRpcError) as on_product:
        await api.catalog.CreateProduct(
            catalog_pb2.CreateProductRequest(name="P", category=category)
        )
    with pytest.raises(grpc.aio.AioRpcError) as on_update:
        await api.catalog.UpdateItem(
            catalog_pb2.UpdateItemRequest(
                item=catalog_pb2.Item(id=existing.id, category=category),
                update_mask=mask("category"),
            )
        )

    for refused, field in ((on_create, "category"), (on_product, "category"),
                           (on_update, "item.category")):  # fmt: skip
        f = failure(refused.value)
        assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, field)
    assert [i.sku for i in (await all_pages(api, 10))[0]] == ["KEEP-1"]
    assert (await get(server, existing.id)) == existing


async def test_update_changes_the_masked_fields_only_and_records_them(server: Running) -> None:
    api = server.api
    before = await item(api, sku="LAMP-1", name="Lamp", description="Desk lamp")

    updated = await api.catalog.UpdateItem(
        catalog_pb2.UpdateItemRequest(
            item=catalog_pb2.Item(
                id=before.id, name="Reading lamp", category="home.lighting",
                description="not in the mask: ignored", sku="OTHER", stock_on_hand=99,
            ),
            update_mask=mask("name", "category"),
        )
    )  # fmt: skip
    again = await api.catalog.UpdateItem(  # the same values: nothing to do
        catalog_pb2.UpdateItemRequest(
            item=catalog_pb2.Item(id=before.id, name="Reading lamp", category="home.lighting"),
            update_mask=mask("name", "category"),
        )
    )

    assert (updated.name, updated.category, updated.description) == (
        "Reading lamp",
        "home.lighting",
        "Desk lamp",
    )
    assert (updated.sku, updated.stock_on_hand, updated.kind) == (
        "LAMP-1",
        10,
        common_pb2.ITEM_KIND_VIRTUAL,
    )
    assert updated.update_time.ToDatetime() > before.update_time.ToDatetime()
    assert again == updated == await get(server, before.id)
    actions, outbox = await written(server.app.stores, before.id)
    assert actions == ["catalog.create_item", "catalog.update_item"]
    assert [(e["type"], e["actor"]) for e in outbox] == [("item.updated", TEST_SUBJECT)]
    assert outbox[0]["payload"]["changed"] == {"name": "Reading lamp", "category": "home.lighting"}


async def test_a_bad_update_is_refused_naming_the_field_and_changes_nothing(
    server: Running,
) -> None:
    api = server.api
    lone = await item(api, sku="BAG-1", name="Bag")
    bad = [
        (mask("sku"), catalog_pb2.Item(sku="BAG-2"), "update_mask"),
        (mask("kind"), catalog_pb2.Item(kind=common_pb2.ITEM_KIND_PHYSICAL), "update_mask"),
        (mask("stock_on_hand"), catalog_pb2.Item(stock_on_hand=5), "update_mask"),
        (mask("no_such_field"), catalog_pb2.Item(), "update_mask"),
        (mask("*"), catalog_pb2.Item(name="All"), "update_mask"),
        (mask(), catalog_pb2.Item(name="None"), "update_mask"),
        (mask("name"), catalog_pb2.Item(name=""), "item.name"),
        (mask("name", "category"), catalog_pb2.Item(name="Ok", category="Bad!"), "item.category"),
        # A stand-alone item has no variant attributes.
        (mask("variant_attributes"), catalog_pb2.Item(variant_attributes={"size": "M"}),
         "item.variant_attributes"),
    ]  # fmt: skip
    for paths, values, field in bad:
        values.id = lone.id
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.catalog.UpdateItem(
                catalog_pb2.UpdateItemRequest(item=values, update_mask=paths)
            )
        f = failure(refused.value)
        assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, field), paths
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await api.catalog.UpdateItem(
            catalog_pb2.UpdateItemRequest(
                item=catalog_pb2.Item(id=str(uuid.uuid4()), name="X"), update_mask=mask("name")
            )
        )

    assert failure(missing.value).code == grpc.StatusCode.NOT_FOUND
    assert await get(server, lone.id) == lone
    assert (await written(server.app.stores, lone.id)) == (["catalog.create_item"], [])


async def test_a_variant_s_attributes_can_change(server: Running) -> None:
    api = server.api
    product = await api.catalog.CreateProduct(catalog_pb2.CreateProductRequest(name="Tee"))
    tee = await item(api, sku="TEE-S", product_id=product.id, variant_attributes={"size": "S"})
    updated = await api.catalog.UpdateItem(
        catalog_pb2.UpdateItemRequest(
            item=catalog_pb2.Item(id=tee.id, variant_attributes={"size": "M", "fit": "slim"}),
            update_mask=mask("variant_attributes"),
        )
    )
    assert dict(updated.variant_attributes) == {"size": "M", "fit": "slim"}
    assert updated.product_id == product.id


async def campaign(server: Running, item_id: str, *, starts_in: timedelta) -> campaign_pb2.Campaign:
    starts = datetime.now(UTC) + starts_in
    return await server.api.campaigns.CreateCampaign(
        campaign_pb2.CreateCampaignRequest(
            item_id=item_id,
            name="Spring",
            units_allotted=2,
            points_price=100,
            per_member_limit=1,
            starts_at=ts(starts),
            ends_at=ts(starts + timedelta(hours=1)),
        )
    )


async def test_retire_is_refused_while_a_campaign_lives_naming_it(server: Running) -> None:
    api = server.api
    target = await item(api, sku="VASE-1", stock=10)
    upcoming = await campaign(server, target.id, starts_in=timedelta(hours=2))
    on_sale = await campaign(server, target.id, starts_in=timedelta(seconds=-60))

    with pytest.raises(grpc.aio.AioRpcError) as both:
        await api.catalog.RetireItem(catalog_pb2.RetireItemRequest(item_id=target.id))
    await api.campaigns.EndCampaign(campaign_pb2.EndCampaignRequest(campaign_id=on_sale.id))
    with pytest.raises(grpc.aio.AioRpcError) as one:
        await api.catalog.RetireItem(catalog_pb2.RetireItemRequest(item_id=target.id))

    f = failure(both.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ITEM_HAS_LIVE_CAMPAIGN")
    # The one ending soonest is named, and how many there are.
    assert (f.metadata["campaign_id"], f.metadata["live_campaigns"]) == (on_sale.id, "2")
    assert on_sale.id in f.message
    g = failure(one.value)
    assert (g.reason, g.metadata["campaign_id"], g.metadata["live_campaigns"]) == (
        "ITEM_HAS_LIVE_CAMPAIGN",
        upcoming.id,
        "1",
    )
    after = await get(server, target.id)
    assert after.state == catalog_pb2.ITEM_STATE_ACTIVE and not after.HasField("retire_time")
    actions, outbox = await written(server.app.stores, target.id)
    assert "catalog.retire_item" not in actions
    assert outbox == []


async def test_retire_is_idempotent_and_then_no_campaign_takes_the_item(server: Running) -> None:
    api = server.api
    target = await item(api, sku="CUP-1", stock=10)
    ended = await campaign(server, target.id, starts_in=timedelta(seconds=-60))
    member = await api.member(points=500)
    sold = await api.redeem(member.id, ended.id)
    await api.campaigns.EndCampaign(campaign_pb2.EndCampaignRequest(campaign_id=ended.id))

    retired = await api.catalog.RetireItem(catalog_pb2.RetireItemRequest(item_id=target.id))
    again = await api.catalog.RetireItem(catalog_pb2.RetireItemRequest(item_id=target.id))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await campaign(server, target.id, starts_in=timedelta(seconds=-60))
    # Write-offs of a retired item's stock go on.
    written_off = await api.catalog.AdjustStock(
        catalog_pb2.AdjustStockRequest(
            item_id=target.id, delta=-9, reason="write-off", idempotency_key="w-1"
        )
    )

    assert retired.state == catalog_pb2.ITEM_STATE_RETIRED and retired.HasField("retire_time")
    assert again == retired
    f = failure(refused.value)
    assert (f.code, f.reason, f.metadata["item_id"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ITEM_RETIRED",
        target.id,
    )
    assert retired.stock_on_hand == 9  # 10 - 2 allotted + 1 unsold back; nothing allotted since
    assert written_off.item.stock_on_hand == 0
    assert written_off.item.state == catalog_pb2.ITEM_STATE_RETIRED
    # The redemption it sold is untouched.
    redemption = await api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(redemption_id=sold.redemption.id, member_id=member.id)
    )
    assert redemption.status == sold.redemption.status
    actions, outbox = await written(server.app.stores, target.id)
    assert actions.count("catalog.retire_item") == 1
    retired_events = [e for e in outbox if e["type"] == "item.retired"]
    assert len(retired_events) == 1
    assert retired_events[0]["payload"]["sku"] == "CUP-1"
    listed, _ = await all_pages(api, 10, state=catalog_pb2.ITEM_STATE_RETIRED)
    assert [i.id for i in listed] == [target.id]


async def test_retire_an_unknown_or_malformed_item(server: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await server.api.catalog.RetireItem(
            catalog_pb2.RetireItemRequest(item_id=str(uuid.uuid4()))
        )
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await server.api.catalog.RetireItem(catalog_pb2.RetireItemRequest(item_id="x"))
    assert failure(missing.value).code == grpc.StatusCode.NOT_FOUND
    assert (failure(malformed.value).code, failure(malformed.value).field) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "item_id",
    )
