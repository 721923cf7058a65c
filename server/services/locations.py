"""LocationService. Operators: where stock lives, and transfers between locations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inventory.locations import Locations
from loyalty.v1 import locations_pb2, locations_pb2_grpc
from server import convert_locations

if TYPE_CHECKING:
    from server.services import Context


class LocationService(locations_pb2_grpc.LocationServiceServicer):
    def __init__(self, locations: Locations) -> None:
        self._locations = locations

    async def CreateLocation(
        self, request: locations_pb2.CreateLocationRequest, context: Context
    ) -> locations_pb2.CreateLocationResponse:
        created, replayed = await self._locations.create(code=request.code, name=request.name)
        return locations_pb2.CreateLocationResponse(
            location=convert_locations.location(created), replayed=replayed
        )

    async def ListLocations(
        self, request: locations_pb2.ListLocationsRequest, context: Context
    ) -> locations_pb2.ListLocationsResponse:
        found = await self._locations.list_all()
        return locations_pb2.ListLocationsResponse(
            locations=[convert_locations.location(x) for x in found]
        )

    async def TransferStock(
        self, request: locations_pb2.TransferStockRequest, context: Context
    ) -> locations_pb2.TransferStockResponse:
        done = await self._locations.transfer(
            item_id=request.item_id,
            from_code=request.from_location_code,
            to_code=request.to_location_code,
            quantity=request.quantity,
            reason=request.reason,
            idempotency_key=request.idempotency_key,
        )
        return locations_pb2.TransferStockResponse(
            transfer=convert_locations.transfer(done.transfer), replayed=done.replayed
        )
