"""protobuf <-> domain objects for StockService (inventory/ledger.py) and StockCountService
(inventory/low_stock.py, inventory/counts.py)."""

from __future__ import annotations

from common.errors import InvalidArgument
from inventory.counts import CountReport, Outcome
from inventory.ledger import Movement, StockLevels
from inventory.low_stock import StockStatus
from inventory.stock import MovementKind
from loyalty.v1 import stock_counts_pb2, stock_pb2
from server.convert import timestamp

_KIND_TO_PB = {
    MovementKind.RECEIVED: stock_pb2.STOCK_MOVEMENT_KIND_RECEIVED,
    MovementKind.ADJUSTED: stock_pb2.STOCK_MOVEMENT_KIND_ADJUSTED,
    MovementKind.COUNTED: stock_pb2.STOCK_MOVEMENT_KIND_COUNTED,
    MovementKind.WRITTEN_OFF: stock_pb2.STOCK_MOVEMENT_KIND_WRITTEN_OFF,
    MovementKind.TRANSFERRED_OUT: stock_pb2.STOCK_MOVEMENT_KIND_TRANSFERRED_OUT,
    MovementKind.TRANSFERRED_IN: stock_pb2.STOCK_MOVEMENT_KIND_TRANSFERRED_IN,
    MovementKind.RETURNED: stock_pb2.STOCK_MOVEMENT_KIND_RETURNED,
    MovementKind.ALLOTTED: stock_pb2.STOCK_MOVEMENT_KIND_ALLOTTED,
    MovementKind.RELEASED: stock_pb2.STOCK_MOVEMENT_KIND_RELEASED,
    MovementKind.REDEEMED: stock_pb2.STOCK_MOVEMENT_KIND_REDEEMED,
    MovementKind.CANCELLED: stock_pb2.STOCK_MOVEMENT_KIND_CANCELLED,
}
_KIND_FROM_PB = {pb: kind for kind, pb in _KIND_TO_PB.items()}


def movement_kind(value: int, field: str) -> MovementKind:
    try:
        return _KIND_FROM_PB[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument(field, "must be a known STOCK_MOVEMENT_KIND_*") from None


def levels(value: StockLevels) -> stock_pb2.GetStockLevelsResponse:
    return stock_pb2.GetStockLevelsResponse(
        item_id=value.item_id,
        sku=value.sku,
        on_hand=value.on_hand,
        allotted=value.allotted,
        available=value.available,
        held=value.held,
        committed=value.committed,
        locations=[
            stock_pb2.StockLevel(
                location_id=level.location_id,
                location_code=level.location_code,
                on_hand=level.on_hand,
                allotted=level.allotted,
                available=level.available,
            )
            for level in value.locations
        ],
    )


def movement(value: Movement) -> stock_pb2.StockMovement:
    return stock_pb2.StockMovement(
        id=value.id,
        item_id=value.item_id,
        location_id=value.location_id,
        location_code=value.location_code,
        kind=_KIND_TO_PB[value.kind],
        on_hand_delta=value.on_hand_delta,
        allotted_delta=value.allotted_delta,
        campaign_id=value.campaign_id or "",
        redemption_id=value.redemption_id or "",
        reference=value.reference or "",
        actor=value.actor or "",
        reason=value.reason or "",
        create_time=timestamp(value.created_at),
    )


_OUTCOME_TO_PB = {
    Outcome.MATCHED: stock_counts_pb2.COUNT_LINE_OUTCOME_MATCHED,
    Outcome.ADJUSTED: stock_counts_pb2.COUNT_LINE_OUTCOME_ADJUSTED,
    Outcome.UNKNOWN_SKU: stock_counts_pb2.COUNT_LINE_OUTCOME_UNKNOWN_SKU,
    Outcome.BELOW_ALLOTTED: stock_counts_pb2.COUNT_LINE_OUTCOME_BELOW_ALLOTTED,
    Outcome.DUPLICATE_SKU: stock_counts_pb2.COUNT_LINE_OUTCOME_DUPLICATE_SKU,
}


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
