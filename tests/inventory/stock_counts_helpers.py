"""Shared steps for the low-stock and count tests: the stub, and the events written."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from loyalty.v1 import stock_counts_pb2, stock_counts_pb2_grpc
from tests.conftest import Running

if TYPE_CHECKING:
    from loyalty.v1.stock_counts_pb2_grpc import StockCountServiceAsyncStub


def stub(server: Running) -> StockCountServiceAsyncStub:
    return stock_counts_pb2_grpc.StockCountServiceStub(server.channel)


async def set_threshold(
    server: Running, item_id: str, threshold: int | None
) -> stock_counts_pb2.ItemStockStatus:
    response = await stub(server).SetLowStockThreshold(
        stock_counts_pb2.SetLowStockThresholdRequest(item_id=item_id, threshold=threshold)
    )
    return response.item


async def events_of(server: Running, *types: str) -> list[tuple[str, dict[str, Any]]]:
    """(type, payload) of the events of these types, in sequence order."""
    async with server.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT type, payload FROM events WHERE type = ANY(%s) ORDER BY sequence",
            (list(types),),
        )
        rows = await cur.fetchall()
    return [(str(t), p if isinstance(p, dict) else json.loads(p)) for t, p in rows]
