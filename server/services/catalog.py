"""CatalogService. Operators: the items on sale and their stock."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inventory.items import Catalog
from loyalty.v1 import catalog_pb2, catalog_pb2_grpc
from server import convert, convert_locations

if TYPE_CHECKING:
    from server.services import Context


class CatalogService(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def CreateItem(
        self, request: catalog_pb2.CreateItemRequest, context: Context
    ) -> catalog_pb2.Item:
        created = await self._catalog.create_item(
            sku=request.sku,
            name=request.name,
            kind=convert.item_kind(request.kind),
            initial_stock=request.initial_stock,
            code_source=convert.code_source(request.code_source),
            location_code=request.location_code,
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
