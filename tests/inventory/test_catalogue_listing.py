"""ListItems: every filter paged through more items than a page holds, by sku, each item
exactly once; bad filters and page tokens are INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest

from loyalty.v1 import catalog_pb2, common_pb2
from server import scopes
from tests import auth
from tests.conftest import Running
from tests.factories import Api, failure
from tests.inventory.catalogue_helpers import all_pages, item

PHYSICAL, VIRTUAL = common_pb2.ITEM_KIND_PHYSICAL, common_pb2.ITEM_KIND_VIRTUAL


async def seed(api: Api) -> dict[str, set[str]]:
    """17 items; returns the skus each filter below should take."""
    product = await api.catalog.CreateProduct(
        catalog_pb2.CreateProductRequest(name="Tee", category="fashion.tops")
    )
    for size in ("XS", "S", "M", "L", "XL", "XXL", "3XL"):  # 7 variants, fashion.tops
        await item(
            api, sku=f"TEE-{size}", name=f"Tee {size}", kind=PHYSICAL, product_id=product.id,
            variant_attributes={"size": size},
        )  # fmt: skip
    for n in range(6):  # 6 mugs: home.kitchen, PHYSICAL
        await item(api, sku=f"MUG-{n}", name=f"Tea Mug {n}", kind=PHYSICAL, category="home.kitchen")
    await item(api, sku="HOME-1", name="Cushion", kind=PHYSICAL, category="home")
    await item(api, sku="HOMEWARE-1", name="Rug", kind=PHYSICAL, category="homeware")
    await item(api, sku="GIFT-1", name="Gift card 100%", kind=VIRTUAL)
    await item(api, sku="GIFT_2", name="Gift card_x", kind=VIRTUAL)
    for sku in ("MUG-0", "MUG-1", "TEE-XS"):
        listed = await api.catalog.ListItems(catalog_pb2.ListItemsRequest(sku_prefix=sku))
        await api.catalog.RetireItem(catalog_pb2.RetireItemRequest(item_id=listed.items[0].id))
    tees = {f"TEE-{s}" for s in ("XS", "S", "M", "L", "XL", "XXL", "3XL")}
    mugs = {f"MUG-{n}" for n in range(6)}
    every = tees | mugs | {"HOME-1", "HOMEWARE-1", "GIFT-1", "GIFT_2"}
    return {
        "all": every,
        "product": tees,
        "mugs": mugs,
        "home": mugs | {"HOME-1"},  # not "homeware"
        "retired": {"MUG-0", "MUG-1", "TEE-XS"},
        "virtual": {"GIFT-1", "GIFT_2"},
        "product_id": {product.id},
    }


async def test_each_filter_pages_through_every_item_once_by_sku(server: Running) -> None:
    api = server.api
    want = await seed(api)
    [product_id] = want["product_id"]
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({}, want["all"]),
        ({"sku_prefix": "MUG-"}, want["mugs"]),
        ({"sku_prefix": "GIFT_"}, {"GIFT_2"}),  # "_" is a character, not LIKE's wildcard
        ({"name_contains": "tea mug"}, want["mugs"]),  # case-insensitive
        ({"name_contains": "EE"}, want["product"]),
        ({"name_contains": "100%"}, {"GIFT-1"}),  # "%" is a character too
        ({"kind": PHYSICAL}, want["all"] - want["virtual"]),
        ({"kind": VIRTUAL}, want["virtual"]),
        ({"category": "home"}, want["home"]),
        ({"category": "home.kitchen"}, want["mugs"]),
        ({"category": "fashion"}, want["product"]),
        ({"state": catalog_pb2.ITEM_STATE_RETIRED}, want["retired"]),
        ({"state": catalog_pb2.ITEM_STATE_ACTIVE}, want["all"] - want["retired"]),
        ({"product_id": product_id}, want["product"]),
        (
            {
                "product_id": product_id,
                "state": catalog_pb2.ITEM_STATE_ACTIVE,
                "name_contains": "x",
            },
            {"TEE-XL", "TEE-XXL", "TEE-3XL"},
        ),
        ({"category": "home", "kind": VIRTUAL}, set()),
    ]
    for filters, expected in cases:
        found, sizes = await all_pages(api, 2, **filters)
        skus = [i.sku for i in found]
        assert skus == sorted(expected), filters  # by sku, each once
        # Full pages of 2 until the last (an empty last page only when nothing matches).
        assert (all(s == 2 for s in sizes[:-1]) and 0 < sizes[-1] <= 2) or not expected, filters
    # A page larger than the result: one page, no token.
    whole = await api.catalog.ListItems(catalog_pb2.ListItemsRequest(page_size=500))
    assert len(whole.items) == len(want["all"]) and whole.next_page_token == ""
    retired = [i for i in whole.items if i.state == catalog_pb2.ITEM_STATE_RETIRED]
    assert all(i.HasField("retire_time") for i in retired) and len(retired) == 3


async def test_the_default_page_is_50(server: Running) -> None:
    api = server.api
    for n in range(53):
        await item(api, sku=f"BULK-{n:03d}")
    first = await api.catalog.ListItems(catalog_pb2.ListItemsRequest())
    rest = await api.catalog.ListItems(
        catalog_pb2.ListItemsRequest(page_token=first.next_page_token)
    )
    assert [i.sku for i in first.items] == [f"BULK-{n:03d}" for n in range(50)]
    assert [i.sku for i in rest.items] == ["BULK-050", "BULK-051", "BULK-052"]
    assert rest.next_page_token == ""


def _token(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (catalog_pb2.ListItemsRequest(page_token="not-a-token"), "page_token"),
        (catalog_pb2.ListItemsRequest(page_token=_token(["x"])), "page_token"),
        (catalog_pb2.ListItemsRequest(page_token=_token({"after": 3, "q": "x"})), "page_token"),
        (catalog_pb2.ListItemsRequest(page_size=501), "page_size"),
        (catalog_pb2.ListItemsRequest(page_size=-1), "page_size"),
        (catalog_pb2.ListItemsRequest(sku_prefix="has space"), "sku_prefix"),
        (catalog_pb2.ListItemsRequest(category="Home"), "category"),
        (catalog_pb2.ListItemsRequest(product_id="nope"), "product_id"),
        (catalog_pb2.ListItemsRequest(name_contains="a\x01"), "name_contains"),
        (catalog_pb2.ListItemsRequest(state=7), "state"),  # type: ignore[arg-type]
        (catalog_pb2.ListItemsRequest(kind=9), "kind"),  # type: ignore[arg-type]
    ],
)
async def test_a_bad_listing_request_names_the_field(
    server: Running, request_: catalog_pb2.ListItemsRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await server.api.catalog.ListItems(request_)
    f = failure(bad.value)
    assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, field)


async def test_a_token_is_refused_with_other_filters(server: Running) -> None:
    api = server.api
    for n in range(3):
        await item(api, sku=f"MUG-{n}", kind=PHYSICAL)
    first = await api.catalog.ListItems(catalog_pb2.ListItemsRequest(page_size=1, kind=PHYSICAL))
    same = await api.catalog.ListItems(
        catalog_pb2.ListItemsRequest(page_size=1, kind=PHYSICAL, page_token=first.next_page_token)
    )
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await api.catalog.ListItems(
            catalog_pb2.ListItemsRequest(page_size=1, page_token=first.next_page_token)
        )
    assert [i.sku for i in (*first.items, *same.items)] == ["MUG-0", "MUG-1"]
    f = failure(other.value)
    assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, "page_token")
    assert "filters" in f.message


async def test_a_storefront_may_list_and_read_but_not_change(server: Running) -> None:
    api = server.api
    target = await item(api, sku="MUG-1")
    port = server.app.port
    channel = auth.channel(f"127.0.0.1:{port}", auth.token([scopes.STOREFRONT]))
    try:
        shop = Api(channel)
        listed = await shop.catalog.ListItems(catalog_pb2.ListItemsRequest())
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await shop.catalog.RetireItem(catalog_pb2.RetireItemRequest(item_id=target.id))
    finally:
        await channel.close()
    assert [i.sku for i in listed.items] == ["MUG-1"]
    assert failure(denied.value).code == grpc.StatusCode.PERMISSION_DENIED
    assert (
        await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=target.id))
    ).state == catalog_pb2.ITEM_STATE_ACTIVE
