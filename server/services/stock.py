"""StockService. Operators, reports and the warehouse: where an item's units are and the
movements that put them there (inventory/ledger.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inventory.ledger import MovementFilter, StockLedger
from loyalty.v1 import stock_pb2, stock_pb2_grpc
from server import convert_stock

if TYPE_CHECKING:
    from server.services import Context


class StockService(stock_pb2_grpc.StockServiceServicer):
    def __init__(self, ledger: StockLedger) -> None:
        self._ledger = ledger

    async def GetStockLevels(
        self, request: stock_pb2.GetStockLevelsRequest, context: Context
    ) -> stock_pb2.GetStockLevelsResponse:
        return convert_stock.levels(await self._ledger.levels(request.item_id))

    async def ListStockMovements(
        self, request: stock_pb2.ListStockMovementsRequest, context: Context
    ) -> stock_pb2.ListStockMovementsResponse:
        where = MovementFilter(
            location_code=request.location_code,
            kinds=[convert_stock.movement_kind(k, "kinds") for k in request.kinds],
            campaign_id=request.campaign_id,
            redemption_id=request.redemption_id,
        )
        page = await self._ledger.movements(
            request.item_id, where, page_size=request.page_size, page_token=request.page_token
        )
        return stock_pb2.ListStockMovementsResponse(
            movements=[convert_stock.movement(m) for m in page.movements],
            next_page_token=page.next_page_token,
        )
