"""Items and stock through CatalogService, and campaigns allotting stock."""

from __future__ import annotations

import uuid

import grpc
import pytest

from loyalty.v1 import catalog_pb2, common_pb2
from tests.factories import Api, failure


def adjust(
    item_id: str, delta: int, key: str = "adj-1", reason: str = "restock"
) -> catalog_pb2.AdjustStockRequest:
    return catalog_pb2.AdjustStockRequest(
        item_id=item_id, delta=delta, reason=reason, idempotency_key=key
    )


async def test_create_and_get_an_item(api: Api) -> None:
    created = await api.catalog.CreateItem(
        catalog_pb2.CreateItemRequest(
            sku="MUG-1", name="Mug", kind=common_pb2.ITEM_KIND_PHYSICAL, initial_stock=7
        )
    )
    fetched = await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=created.id))
    assert fetched == created
    assert (fetched.sku, fetched.kind, fetched.stock_on_hand) == (
        "MUG-1",
        common_pb2.ITEM_KIND_PHYSICAL,
        7,
    )


async def test_a_duplicate_sku_already_exists(api: Api) -> None:
    request = catalog_pb2.CreateItemRequest(sku="DUP", name="A", kind=common_pb2.ITEM_KIND_VIRTUAL)
    await api.catalog.CreateItem(request)
    with pytest.raises(grpc.aio.AioRpcError) as dup:
        await api.catalog.CreateItem(request)
    assert failure(dup.value).code == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize("sku", ["", "has space", "SKU-1\n", "s" * 65])
async def test_a_malformed_sku_is_refused_naming_the_field(api: Api, sku: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await api.catalog.CreateItem(
            catalog_pb2.CreateItemRequest(sku=sku, name="A", kind=common_pb2.ITEM_KIND_VIRTUAL)
        )
    assert failure(bad.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert "sku" in (bad.value.details() or "")


async def test_unknown_item_is_not_found(api: Api) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=str(uuid.uuid4())))
    assert failure(missing.value).code == grpc.StatusCode.NOT_FOUND


async def test_adjust_stock_is_idempotent_and_never_goes_negative(api: Api) -> None:
    item = await api.item(stock=5)

    added = await api.catalog.AdjustStock(adjust(item.id, 3))
    replay = await api.catalog.AdjustStock(adjust(item.id, 3))
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await api.catalog.AdjustStock(adjust(item.id, 4))
    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await api.catalog.AdjustStock(adjust(item.id, -9, key="adj-2", reason="breakage"))
    with pytest.raises(grpc.aio.AioRpcError) as zero:
        await api.catalog.AdjustStock(adjust(item.id, 0, key="adj-3"))
    removed = await api.catalog.AdjustStock(adjust(item.id, -8, key="adj-4", reason="breakage"))

    assert added.item.stock_on_hand == 8 and not added.replayed
    assert replay.replayed and replay.adjustment_id == added.adjustment_id
    assert failure(reused.value).reason == "IDEMPOTENCY_KEY_REUSED"
    f = failure(too_many.value)
    assert (f.code, f.reason, f.metadata["stock_on_hand"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_STOCK",
        "8",
    )
    assert failure(zero.value).field == "delta"
    assert removed.item.stock_on_hand == 0


async def test_a_campaign_allots_units_out_of_stock_on_hand(api: Api) -> None:
    item = await api.item(stock=10)

    campaign = await api.campaign(units=7, item_id=item.id)
    with pytest.raises(grpc.aio.AioRpcError) as short:
        await api.campaign(units=4, item_id=item.id)

    assert campaign.units_allotted == 7 and campaign.units_remaining == 7
    assert (
        await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item.id))
    ).stock_on_hand == 3
    assert failure(short.value).reason == "INSUFFICIENT_STOCK"
