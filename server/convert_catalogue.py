"""Protobuf <-> domain for the catalogue: products, ListItems' filters, UpdateItem's field
mask, CreateItem's details. server/convert.py has the item itself."""

from __future__ import annotations

from typing import Any

from common.errors import InvalidArgument
from inventory.catalogue import ItemDetails, ItemState
from inventory.changes import UPDATABLE
from inventory.listing import ItemPage, ItemQuery
from inventory.products import Product, ProductWithVariants
from loyalty.v1 import catalog_pb2
from server import convert
from server.convert_campaigns import kind_filter

_STATE_FROM_PB = {
    catalog_pb2.ITEM_STATE_ACTIVE: ItemState.ACTIVE,
    catalog_pb2.ITEM_STATE_RETIRED: ItemState.RETIRED,
}


def item_details(request: catalog_pb2.CreateItemRequest) -> ItemDetails:
    return ItemDetails.checked(
        description_=request.description,
        category_=request.category,
        product_id=request.product_id,
        variant_attributes_=dict(request.variant_attributes),
    )


def state_filter(value: int) -> ItemState | None:
    """ITEM_STATE_UNSPECIFIED: no filter."""
    if value == catalog_pb2.ITEM_STATE_UNSPECIFIED:
        return None
    state: ItemState | None = _STATE_FROM_PB.get(value)  # type: ignore[call-overload]
    if state is None:
        raise InvalidArgument("state", f"unknown item state {value}")
    return state


def item_query(request: catalog_pb2.ListItemsRequest) -> ItemQuery:
    try:
        kind = kind_filter(request.kind)
    except InvalidArgument:
        raise InvalidArgument("kind", f"unknown item kind {request.kind}") from None
    return ItemQuery(
        sku_prefix=request.sku_prefix,
        name_contains=request.name_contains,
        kind=kind,
        category=request.category,
        state=state_filter(request.state),
        product_id=request.product_id,
    )


def item_page(value: ItemPage) -> catalog_pb2.ListItemsResponse:
    return catalog_pb2.ListItemsResponse(
        items=[convert.item(i) for i in value.items], next_page_token=value.next_page_token
    )


def item_changes(request: catalog_pb2.UpdateItemRequest) -> dict[str, Any]:
    """The fields update_mask names, taken from request.item (AIP-134)."""
    paths = list(request.update_mask.paths)
    if not paths:
        raise InvalidArgument("update_mask", "is required: name the fields to change")
    changes: dict[str, Any] = {}
    for path in paths:
        if path not in UPDATABLE:
            raise InvalidArgument(
                "update_mask", f"cannot change {path!r}; one of: {', '.join(UPDATABLE)}"
            )
        value = getattr(request.item, path)
        changes[path] = dict(value) if path == "variant_attributes" else value
    return changes


def product(value: Product) -> catalog_pb2.Product:
    return catalog_pb2.Product(
        id=value.id,
        name=value.name,
        description=value.description,
        category=value.category or "",
        create_time=convert.timestamp(value.created_at),
    )


def product_with_variants(value: ProductWithVariants) -> catalog_pb2.GetProductResponse:
    return catalog_pb2.GetProductResponse(
        product=product(value.product), variants=[convert.item(i) for i in value.variants]
    )
