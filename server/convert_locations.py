"""Protobuf for LocationService, and the location fields of CatalogService's and
CampaignService's requests."""

from __future__ import annotations

from collections.abc import Iterable

from common.errors import InvalidArgument
from inventory.locations import Location, Transfer
from inventory.stock import MovementKind
from loyalty.v1 import campaign_pb2, catalog_pb2, locations_pb2
from server import convert

_ADJUSTMENT_KIND_FROM_PB = {
    catalog_pb2.ADJUSTMENT_KIND_UNSPECIFIED: MovementKind.ADJUSTED,
    catalog_pb2.ADJUSTMENT_KIND_ADJUSTED: MovementKind.ADJUSTED,
    catalog_pb2.ADJUSTMENT_KIND_RECEIVED: MovementKind.RECEIVED,
    catalog_pb2.ADJUSTMENT_KIND_WRITTEN_OFF: MovementKind.WRITTEN_OFF,
}


def adjustment_kind(value: int) -> MovementKind:
    kind = _ADJUSTMENT_KIND_FROM_PB.get(value)  # type: ignore[call-overload]
    if kind is None:
        raise InvalidArgument(
            "movement_kind",
            "must be ADJUSTMENT_KIND_ADJUSTED, ADJUSTMENT_KIND_RECEIVED or "
            "ADJUSTMENT_KIND_WRITTEN_OFF",
        )
    return kind  # type: ignore[no-any-return]


def allotments(values: Iterable[campaign_pb2.CampaignAllotment]) -> list[tuple[str, int]]:
    return [(a.location_code, a.units) for a in values]


def location(value: Location) -> locations_pb2.Location:
    return locations_pb2.Location(
        id=value.id,
        code=value.code,
        name=value.name,
        create_time=convert.timestamp(value.created_at),
    )


def transfer(value: Transfer) -> locations_pb2.StockTransfer:
    return locations_pb2.StockTransfer(
        id=value.id,
        item_id=value.item_id,
        from_location_code=value.from_code,
        to_location_code=value.to_code,
        quantity=value.quantity,
        reason=value.reason,
        create_time=convert.timestamp(value.created_at),
    )
