"""Physical counts over gRPC and real PostgreSQL: differences up and down written as
`counted` movements, a matched line, an unknown sku, a line below the allotted units and a
duplicate sku reported and not applied, dry runs, idempotent replays and key reuse, bad
requests refused whole; the audit passes after."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest

from loyalty.v1 import catalog_pb2, stock_counts_pb2
from tests.conftest import Running
from tests.factories import failure
from tests.flashsale.helpers import settled_audit
from tests.inventory.stock_counts_helpers import events_of, set_threshold, stub

pb = stock_counts_pb2  # outcome names are long


def count(
    lines: list[tuple[str, int]], key: str = "count-1", *, dry_run: bool = False
) -> stock_counts_pb2.SubmitStockCountRequest:
    return stock_counts_pb2.SubmitStockCountRequest(
        location_code="default",
        lines=[stock_counts_pb2.StockCountLine(sku=s, counted_units=n) for s, n in lines],
        idempotency_key=key,
        dry_run=dry_run,
    )


async def available(server: Running, item_id: str) -> int:
    item = await server.api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item_id))
    return item.stock_on_hand


async def counted_movements(server: Running) -> list[tuple[str, int, str]]:
    async with server.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT item_id::text, on_hand_delta, reference FROM stock_movements "
            "WHERE kind = 'counted' ORDER BY id"
        )
        return [(str(a), int(b), str(c)) for a, b, c in await cur.fetchall()]


async def test_a_count_reconciles_and_reports_every_line(server: Running) -> None:
    up = await server.api.item(stock=10)
    down = await server.api.item(stock=10)
    same = await server.api.item(stock=5)
    promised = await server.api.item(stock=10)
    twice = await server.api.item(stock=4)
    await server.api.campaign(units=8, item_id=promised.id)  # 8 of its 10 allotted
    await set_threshold(server, down.id, 8)  # counting 7 crosses below it
    lines = [
        (up.sku, 12),
        (down.sku, 7),
        (same.sku, 5),
        ("NO-SUCH-SKU", 3),
        (promised.sku, 6),
        (twice.sku, 4),
        (twice.sku, 1),
    ]

    report = (await stub(server).SubmitStockCount(count(lines))).report

    assert [(ln.line, ln.sku, ln.outcome) for ln in report.lines] == [
        (1, up.sku, pb.COUNT_LINE_OUTCOME_ADJUSTED),
        (2, down.sku, pb.COUNT_LINE_OUTCOME_ADJUSTED),
        (3, same.sku, pb.COUNT_LINE_OUTCOME_MATCHED),
        (4, "NO-SUCH-SKU", pb.COUNT_LINE_OUTCOME_UNKNOWN_SKU),
        (5, promised.sku, pb.COUNT_LINE_OUTCOME_BELOW_ALLOTTED),
        (6, twice.sku, pb.COUNT_LINE_OUTCOME_DUPLICATE_SKU),
        (7, twice.sku, pb.COUNT_LINE_OUTCOME_DUPLICATE_SKU),
    ]
    assert [(ln.expected_units, ln.difference, ln.allotted_units) for ln in report.lines] == [
        (10, 2, 0),
        (10, -3, 0),
        (5, 0, 0),
        (0, 0, 0),
        (10, -4, 8),
        (4, 0, 0),
        (4, -3, 0),
    ]
    assert report.lines[3].item_id == "" and report.lines[0].item_id == up.id
    assert (report.matched, report.adjusted, report.unknown_sku) == (1, 2, 1)
    assert (report.below_allotted, report.duplicate_sku) == (1, 2)
    assert (report.units_added, report.units_removed, report.replayed) == (2, 3, False)
    assert report.count_id and report.actor and report.HasField("counted_at")
    # Applied lines only; the refused ones left their items as they were.
    assert [await available(server, i.id) for i in (up, down, same, promised, twice)] == [
        12,
        7,
        5,
        2,
        4,
    ]
    reference = f"count:{report.count_id}"
    assert sorted(await counted_movements(server)) == sorted(
        [(up.id, 2, reference), (down.id, -3, reference)]
    )
    counted = await events_of(server, "stock.counted")
    assert len(counted) == 1
    assert counted[0][1]["count_id"] == report.count_id
    assert (counted[0][1]["adjusted"], counted[0][1]["units_removed"]) == (2, 3)
    assert [t for t, _ in await events_of(server, "stock.low")] == ["stock.low"]
    async with server.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT subject, target_kind FROM audit_events "
            "WHERE action = 'stock_counts.submit_stock_count'"
        )
        assert [row[1] for row in await cur.fetchall()] == ["location"]
    saved = await stub(server).GetStockCount(
        stock_counts_pb2.GetStockCountRequest(count_id=report.count_id)
    )
    assert saved.report == report
    assert (await settled_audit(server)).ok


async def test_a_dry_run_reports_and_writes_nothing(server: Running) -> None:
    item = await server.api.item(stock=10)

    report = (
        await stub(server).SubmitStockCount(count([(item.sku, 4)], key="", dry_run=True))
    ).report

    assert (report.dry_run, report.count_id, report.units_removed) == (True, "", 6)
    assert report.lines[0].outcome == pb.COUNT_LINE_OUTCOME_ADJUSTED
    assert await available(server, item.id) == 10
    assert await counted_movements(server) == []
    assert await events_of(server, "stock.counted") == []
    async with server.app.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM stock_counts")
        assert await cur.fetchone() == (0,)


async def test_the_same_key_replays_and_other_lines_are_refused(server: Running) -> None:
    item = await server.api.item(stock=10)
    first = (await stub(server).SubmitStockCount(count([(item.sku, 8)]))).report

    again = (await stub(server).SubmitStockCount(count([(item.sku, 8)]))).report
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await stub(server).SubmitStockCount(count([(item.sku, 9)]))

    assert again.replayed and again.count_id == first.count_id
    assert list(again.lines) == list(first.lines)
    assert failure(reused.value).reason == "IDEMPOTENCY_KEY_REUSED"
    assert failure(reused.value).code == grpc.StatusCode.ALREADY_EXISTS
    assert await available(server, item.id) == 8  # applied once
    assert len(await counted_movements(server)) == 1
    assert len(await events_of(server, "stock.counted")) == 1
    assert (await settled_audit(server)).ok


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        ([("A", 1), ("B", -1)], "lines[1].counted_units"),
        ([("A", 1), ("", 2)], "lines[1].sku"),
        ([], "lines"),
        ([("A", 1)] * 10_001, "lines"),
    ],
)
async def test_a_bad_count_is_refused_whole(
    server: Running, lines: list[tuple[str, int]], field: str
) -> None:
    item = await server.api.item(stock=10)
    named = [(item.sku if sku == "A" else sku, n) for sku, n in lines]
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub(server).SubmitStockCount(count(named))
    assert (failure(bad.value).code, failure(bad.value).field) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        field,
    )
    assert await available(server, item.id) == 10
    assert await counted_movements(server) == []


async def test_an_unknown_location_or_count_is_not_found(server: Running) -> None:
    item = await server.api.item(stock=10)
    request = count([(item.sku, 1)])
    request.location_code = "nowhere"
    with pytest.raises(grpc.aio.AioRpcError) as location:
        await stub(server).SubmitStockCount(request)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub(server).GetStockCount(
            stock_counts_pb2.GetStockCountRequest(count_id="00000000-0000-0000-0000-000000000001")
        )
    assert failure(location.value).code == grpc.StatusCode.NOT_FOUND
    assert failure(missing.value).code == grpc.StatusCode.NOT_FOUND
    assert await available(server, item.id) == 10


async def test_counts_run_beside_redemptions_and_adjustments(server: Running) -> None:
    """Counts of overlapping items in either line order, redemptions committing from one
    item's allotment (the group commit changes its levels without the item lock) and
    AdjustStock, all at once: no deadlock, every count applied, and the ledger adds up."""
    a = await server.api.item(stock=100)
    b = await server.api.item(stock=100)
    campaign = await server.api.campaign(units=30, item_id=a.id, limit=5)
    members = [await server.api.member(points=1000) for _ in range(10)]

    calls: list[Awaitable[Any]] = [
        stub(server).SubmitStockCount(count([(a.sku, 90), (b.sku, 120)], key="c-1")),
        stub(server).SubmitStockCount(count([(b.sku, 110), (a.sku, 95)], key="c-2")),
        stub(server).SubmitStockCount(count([(a.sku, 99), (b.sku, 99)], key="c-3")),
        *[server.api.redeem(m.id, campaign.id) for m in members],
        server.api.catalog.AdjustStock(
            catalog_pb2.AdjustStockRequest(
                item_id=b.id, delta=5, reason="delivery", idempotency_key="adj-b"
            )
        ),
    ]
    results = await asyncio.gather(*calls)

    reports = [r.report for r in results[:3]]
    assert all(not r.below_allotted and not r.unknown_sku for r in reports)
    assert (await settled_audit(server)).ok
