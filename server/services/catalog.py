"""CatalogService. Operators: the items on sale, their stock, products and variants, and
the catalogue's listing, descriptive changes and retirement."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inventory.changes import ItemChanges
from inventory.items import Catalog
from inventory.listing import ItemListing
from inventory.products import Products
from loyalty.v1 import catalog_pb2, catalog_pb2_grpc
from server import convert, convert_catalogue, convert_locations

if TYPE_CHECKING:
    from server.services import Context


class CatalogService(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(
        self,
        catalog: Catalog,
        products: Products,
        changes: ItemChanges,
        listing: ItemListing,
    ) -> None:
        self._catalog = catalog
        self._products = products
        self._changes = changes
        self._listing = listing

    async def CreateItem(
        self, request: catalog_pb2.CreateItemRequest, context: Context
    ) -> catalog_pb2.Item:
        created = await self._catalog.create_item(
            sku=request.sku,
            name=request.name,
            kind=convert.item_kind(request.kind),
            initial_stock=request.initial_stock,
            code_source=convert.code_source(request.code_source),
            details=convert_catalogue.item_details(request),
            location_code=request.location_code,
            request_id=request.request_id,
        )
        return convert.item(created)

    async def GetItem(
        self, request: catalog_pb2.GetItemRequest, context: Context
    ) -> catalog_pb2.Item:
        return convert.item(await self._catalog.get_item(request.item_id))

    async def AdjustStock(
        self, request: catalog_pb2.AdjustStockRequest, context: Context
    ) -> catalog_pb2.AdjustStockResponse:
        adjusted = await self._catalog.adjust_stock(
            item_id=request.item_id,
            delta=request.delta,
            reason=request.reason,
            idempotency_key=request.idempotency_key,
            location_code=request.location_code,
            kind=convert_locations.adjustment_kind(request.movement_kind),
        )
        return catalog_pb2.AdjustStockResponse(
            item=convert.item(adjusted.item),
            adjustment_id=adjusted.adjustment_id,
            replayed=adjusted.replayed,
        )

    async def CreateProduct(
        self, request: catalog_pb2.CreateProductRequest, context: Context
    ) -> catalog_pb2.Product:
        created = await self._products.create(
            name=request.name, description=request.description, category=request.category
        )
        return convert_catalogue.product(created)

    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, context: Context
    ) -> catalog_pb2.GetProductResponse:
        found = await self._products.get(request.product_id)
        return convert_catalogue.product_with_variants(found)

    async def ListItems(
        self, request: catalog_pb2.ListItemsRequest, context: Context
    ) -> catalog_pb2.ListItemsResponse:
        page = await self._listing.list_page(
            convert_catalogue.item_query(request),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return convert_catalogue.item_page(page)

    async def UpdateItem(
        self, request: catalog_pb2.UpdateItemRequest, context: Context
    ) -> catalog_pb2.Item:
        changes = convert_catalogue.item_changes(request)
        return convert.item(await self._changes.update(request.item.id, changes))

    async def RetireItem(
        self, request: catalog_pb2.RetireItemRequest, context: Context
    ) -> catalog_pb2.Item:
        return convert.item(await self._changes.retire(request.item_id))
