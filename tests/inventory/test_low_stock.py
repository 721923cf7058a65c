"""The low-stock signal over gRPC and real PostgreSQL: one stock.low and one
stock.replenished per crossing (a campaign's allotment lowers available stock, AdjustStock
raises it), none without a threshold, ListLowStockItems, the gauges, and the audit."""

from __future__ import annotations

import grpc
import pytest

from loyalty.v1 import catalog_pb2, stock_counts_pb2
from tests.conftest import Running
from tests.factories import failure, key
from tests.flashsale.helpers import settled_audit
from tests.inventory.stock_counts_helpers import events_of, set_threshold, stub

LOW = ("stock.low", "stock.replenished")


async def adjust(server: Running, item_id: str, delta: int) -> None:
    await server.api.catalog.AdjustStock(
        catalog_pb2.AdjustStockRequest(
            item_id=item_id, delta=delta, reason="restock", idempotency_key=key()
        )
    )


async def test_crossing_down_and_back_up_writes_one_event_each(server: Running) -> None:
    item = await server.api.item(stock=100)
    status = await set_threshold(server, item.id, 30)
    assert (status.available, status.threshold, status.low) == (100, 30, False)

    await server.api.campaign(units=60, item_id=item.id)  # available 40: still above
    assert await events_of(server, *LOW) == []
    await server.api.campaign(units=15, item_id=item.id)  # 25: crosses below
    await adjust(server, item.id, -5)  # 20: still low, no second event
    await adjust(server, item.id, 9)  # 29: still low
    await adjust(server, item.id, 1)  # 30: back at the threshold
    await adjust(server, item.id, 50)  # 80: still fine

    written = await events_of(server, *LOW)
    assert written == [
        ("stock.low", {"item_id": item.id, "sku": item.sku, "available": 25, "threshold": 30}),
        (
            "stock.replenished",
            {"item_id": item.id, "sku": item.sku, "available": 30, "threshold": 30},
        ),
    ]
    assert (await settled_audit(server)).ok


async def test_no_threshold_no_event(server: Running) -> None:
    item = await server.api.item(stock=10)
    await server.api.campaign(units=10, item_id=item.id)  # available 0
    await adjust(server, item.id, 3)

    assert await events_of(server, *LOW) == []
    listed = await stub(server).ListLowStockItems(stock_counts_pb2.ListLowStockItemsRequest())
    assert list(listed.items) == []


async def test_setting_and_clearing_a_threshold_re_evaluates_at_once(server: Running) -> None:
    item = await server.api.item(stock=10)

    low = await set_threshold(server, item.id, 11)
    still = await set_threshold(server, item.id, 20)  # still low: no second event
    cleared = await set_threshold(server, item.id, None)

    assert (low.low, still.low, cleared.low, cleared.HasField("threshold")) == (
        True,
        True,
        False,
        False,
    )
    assert [t for t, _ in await events_of(server, *LOW)] == ["stock.low", "stock.replenished"]
    async with server.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT subject, content->>'threshold' FROM audit_events "
            "WHERE action = 'stock_counts.set_low_stock_threshold' ORDER BY id"
        )
        audited = await cur.fetchall()
    assert [a[1] for a in audited] == ["11", "20", None]
    assert all(a[0] for a in audited)


async def test_list_low_stock_items_pages_and_shows_the_levels(server: Running) -> None:
    first = await server.api.item(stock=50)
    second = await server.api.item(stock=5)
    fine = await server.api.item(stock=500)
    await server.api.campaign(units=45, item_id=first.id)  # available 5, allotted 45
    for item in (first, second, fine):
        await set_threshold(server, item.id, 10)

    page1 = await stub(server).ListLowStockItems(
        stock_counts_pb2.ListLowStockItemsRequest(page_size=1)
    )
    page2 = await stub(server).ListLowStockItems(
        stock_counts_pb2.ListLowStockItemsRequest(page_size=1, page_token=page1.next_page_token)
    )

    assert [i.item_id for i in page1.items] == [first.id] and page1.next_page_token
    shown = page1.items[0]
    assert (shown.sku, shown.name, shown.available, shown.on_hand, shown.allotted) == (
        first.sku,
        first.name,
        5,
        50,
        45,
    )
    assert (shown.threshold, shown.low) == (10, True)
    assert [i.item_id for i in page2.items] == [second.id] and page2.next_page_token == ""


async def test_the_gauges_after_a_crossing(server: Running) -> None:
    item = await server.api.item(stock=40)
    other = await server.api.item(stock=40)
    await set_threshold(server, item.id, 10)
    await set_threshold(server, other.id, 10)
    await server.api.campaign(units=35, item_id=item.id)  # available 5: low

    await server.app.sweeper.refresh_gauges()
    registry = server.app.metrics.registry
    assert registry.get_sample_value("surge_stock_low_items") == 1
    assert registry.get_sample_value("surge_stock_available", {"item_id": item.id}) == 5
    assert registry.get_sample_value("surge_stock_available", {"item_id": other.id}) == 40
    assert registry.get_sample_value("surge_stock_low_threshold", {"item_id": item.id}) == 10

    await set_threshold(server, other.id, None)  # no longer watched: its series goes
    await server.app.sweeper.refresh_gauges()
    assert registry.get_sample_value("surge_stock_available", {"item_id": other.id}) is None


@pytest.mark.parametrize(
    ("item_id", "threshold", "code", "field"),
    [
        ("", 5, grpc.StatusCode.INVALID_ARGUMENT, "item_id"),
        (None, -1, grpc.StatusCode.INVALID_ARGUMENT, "threshold"),
        ("00000000-0000-0000-0000-000000000001", 5, grpc.StatusCode.NOT_FOUND, ""),
    ],
)
async def test_a_bad_threshold_is_refused_and_changes_nothing(
    server: Running, item_id: str | None, threshold: int, code: grpc.StatusCode, field: str
) -> None:
    item = await server.api.item(stock=5)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await set_threshold(server, item.id if item_id is None else item_id, threshold)
    assert (failure(bad.value).code, failure(bad.value).field) == (code, field)
    got = await server.api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item.id))
    assert got.stock_on_hand == 5
    assert await events_of(server, *LOW) == []
