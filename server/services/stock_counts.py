"""StockCountService: low-stock thresholds and physical counts (inventory/low_stock.py,
inventory/counts.py). Thin: convert, call, convert."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.errors import InvalidArgument
from inventory.counts import MAX_LINES, StockCounts
from inventory.low_stock import LowStock
from loyalty.v1 import stock_counts_pb2, stock_counts_pb2_grpc
from server.convert_stock import count_report, item_status

if TYPE_CHECKING:
    from server.services import Context


class StockCountService(stock_counts_pb2_grpc.StockCountServiceServicer):
    def __init__(self, low_stock: LowStock, counts: StockCounts) -> None:
        self._low_stock = low_stock
        self._counts = counts

    async def SetLowStockThreshold(
        self, request: stock_counts_pb2.SetLowStockThresholdRequest, context: Context
    ) -> stock_counts_pb2.SetLowStockThresholdResponse:
        threshold = request.threshold if request.HasField("threshold") else None
        status = await self._low_stock.set_threshold(request.item_id, threshold)
        return stock_counts_pb2.SetLowStockThresholdResponse(item=item_status(status))

    async def ListLowStockItems(
        self, request: stock_counts_pb2.ListLowStockItemsRequest, context: Context
    ) -> stock_counts_pb2.ListLowStockItemsResponse:
        page = await self._low_stock.list_low(
            page_size=request.page_size, page_token=request.page_token
        )
        return stock_counts_pb2.ListLowStockItemsResponse(
            items=[item_status(s) for s in page.items], next_page_token=page.next_page_token
        )

    async def SubmitStockCount(
        self, request: stock_counts_pb2.SubmitStockCountRequest, context: Context
    ) -> stock_counts_pb2.SubmitStockCountResponse:
        if len(request.lines) > MAX_LINES:  # before copying them
            raise InvalidArgument("lines", f"at most {MAX_LINES} lines a count")
        report = await self._counts.submit(
            location_code=request.location_code,
            lines=[(line.sku, line.counted_units) for line in request.lines],
            idempotency_key=request.idempotency_key,
            dry_run=request.dry_run,
        )
        return stock_counts_pb2.SubmitStockCountResponse(report=count_report(report))

    async def GetStockCount(
        self, request: stock_counts_pb2.GetStockCountRequest, context: Context
    ) -> stock_counts_pb2.GetStockCountResponse:
        report = await self._counts.get(request.count_id)
        return stock_counts_pb2.GetStockCountResponse(report=count_report(report))
