"""StockCountService: low-stock thresholds and physical counts (inventory/low_stock.py,
inventory/counts.py). Thin: convert, call, convert."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.errors import InvalidArgument
from inventory.counts import MAX_LINES, CountReport, Outcome, StockCounts
from inventory.low_stock import LowStock, StockStatus
from loyalty.v1 import stock_counts_pb2, stock_counts_pb2_grpc
from server.convert import timestamp

if TYPE_CHECKING:
    from server.services import Context

_OUTCOME_TO_PB = {
    Outcome.MATCHED: stock_counts_pb2.COUNT_LINE_OUTCOME_MATCHED,
    Outcome.ADJUSTED: stock_counts_pb2.COUNT_LINE_OUTCOME_ADJUSTED,
    Outcome.UNKNOWN_SKU: stock_counts_pb2.COUNT_LINE_OUTCOME_UNKNOWN_SKU,
    Outcome.BELOW_ALLOTTED: stock_counts_pb2.COUNT_LINE_OUTCOME_BELOW_ALLOTTED,
    Outcome.DUPLICATE_SKU: stock_counts_pb2.COUNT_LINE_OUTCOME_DUPLICATE_SKU,
}


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


def item_status(value: StockStatus) -> stock_counts_pb2.ItemStockStatus:
    return stock_counts_pb2.ItemStockStatus(
        item_id=value.item_id,
        sku=value.sku,
        name=value.name,
        available=value.available,
        on_hand=value.on_hand,
        allotted=value.allotted,
        threshold=value.threshold,
        low=value.low,
    )


def count_report(value: CountReport) -> stock_counts_pb2.StockCountReport:
    return stock_counts_pb2.StockCountReport(
        count_id=value.count_id,
        location_code=value.location_code,
        dry_run=value.dry_run,
        replayed=value.replayed,
        lines=[
            stock_counts_pb2.CountedLine(
                line=ln.line,
                sku=ln.sku,
                item_id=ln.item_id or "",
                counted_units=ln.counted,
                expected_units=ln.expected,
                difference=ln.difference,
                allotted_units=ln.allotted,
                outcome=_OUTCOME_TO_PB[ln.outcome],
            )
            for ln in value.lines
        ],
        matched=value.number(Outcome.MATCHED),
        adjusted=value.number(Outcome.ADJUSTED),
        unknown_sku=value.number(Outcome.UNKNOWN_SKU),
        below_allotted=value.number(Outcome.BELOW_ALLOTTED),
        duplicate_sku=value.number(Outcome.DUPLICATE_SKU),
        units_added=value.units_added,
        units_removed=value.units_removed,
        counted_at=timestamp(value.counted_at),
        actor=value.actor,
    )
