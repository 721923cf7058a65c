"""The stock ledger at its edges: a count with units sold but not shipped, a return of units
redeemed from two locations, a transfer that nets to nothing for the low-stock signal, a
sale that runs out its time, and client input that must never reach PostgreSQL raw."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from loyalty.v1 import (
    campaign_pb2,
    catalog_pb2,
    stock_counts_pb2,
    stock_pb2,
    stock_pb2_grpc,
)
from tests.conftest import Running
from tests.factories import ADDRESS, failure, key
from tests.flashsale.fulfilment_helpers import PHYSICAL, Fulfil
from tests.flashsale.helpers import settled_audit
from tests.inventory import stock_counts_helpers as counts
from tests.inventory.test_locations import adjust, allotted, levels, location, rows, stub, transfer


@pytest.fixture
async def fulfil(server: Running) -> AsyncIterator[Fulfil]:
    f = Fulfil.on(server)
    yield f
    await f.close()


def count(sku: str, units: int) -> stock_counts_pb2.SubmitStockCountRequest:
    return stock_counts_pb2.SubmitStockCountRequest(
        location_code="default",
        idempotency_key=key(),
        lines=[stock_counts_pb2.StockCountLine(sku=sku, counted_units=units)],
    )


async def test_a_count_expects_units_sold_and_not_shipped_on_the_shelf(fulfil: Fulfil) -> None:
    """The ledger takes a unit off on hand at its commit; the warehouse at shipping. A count
    between the two finds it on the shelf: that is no difference to record."""
    server = fulfil.running
    api = server.api
    item = await api.item(kind=PHYSICAL, stock=10)
    campaign = await api.campaign(item_id=item.id, units=5, kind=PHYSICAL)
    member = await api.member(points=5000)
    sold = [
        (await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)).redemption
        for _ in range(2)
    ]
    assert await levels(server, item.id) == {"default": (8, 3)}
    shelf = await counts.stub(server).SubmitStockCount(count(item.sku, 10))
    assert [ln.outcome for ln in shelf.report.lines] == [
        stock_counts_pb2.COUNT_LINE_OUTCOME_MATCHED
    ]
    assert shelf.report.lines[0].expected_units == 10

    await fulfil.ship(await fulfil.pack(sold[0]))  # one unit leaves the warehouse
    shelf = await counts.stub(server).SubmitStockCount(count(item.sku, 8))  # two lost
    line = shelf.report.lines[0]
    assert (line.outcome, line.expected_units) == (stock_counts_pb2.COUNT_LINE_OUTCOME_ADJUSTED, 9)
    assert await levels(server, item.id) == {"default": (7, 3)}
    # Fewer than promised (3 allotted + 1 sold, not shipped) is reported, not applied.
    short = await counts.stub(server).SubmitStockCount(count(item.sku, 3))
    assert short.report.lines[0].outcome == stock_counts_pb2.COUNT_LINE_OUTCOME_BELOW_ALLOTTED
    assert await levels(server, item.id) == {"default": (7, 3)}
    assert (await settled_audit(server)).ok


async def test_a_return_goes_back_to_each_location_it_came_from(fulfil: Fulfil) -> None:
    server = fulfil.running
    api = server.api
    for code in ("north", "south"):
        await location(server, code)
    item = await api.item(kind=PHYSICAL, stock=0)
    for where in ("north", "south"):
        await api.catalog.AdjustStock(adjust(item.id, 3, where))
    campaign = await api.campaigns.CreateCampaign(allotted(item.id, south=1, north=2))
    member = await api.member(points=5000)
    r = (await api.redeem(member.id, campaign.id, quantity=2, shipping_address=ADDRESS)).redemption
    delivered = await fulfil.deliver(await fulfil.ship(await fulfil.pack(r)))
    await fulfil.accept(await fulfil.request_return(delivered))
    returned = await rows(
        server,
        "SELECT l.code, m.on_hand_delta FROM stock_movements m JOIN locations l "
        "ON l.id = m.location_id WHERE m.kind = 'returned' ORDER BY l.code",
    )
    assert returned == [("north", 1), ("south", 1)]
    assert await levels(server, item.id) == {"north": (3, 1), "south": (3, 0)}
    assert (await settled_audit(server)).ok


async def test_a_transfer_nets_to_nothing_for_the_low_stock_signal(server: Running) -> None:
    api = server.api
    await location(server, "store")
    item = await api.item(stock=12)
    await counts.set_threshold(server, item.id, 10)
    await stub(server).TransferStock(transfer(item.id, "default", "store", 5))
    assert await counts.events_of(server, "stock.low", "stock.replenished") == []
    # A real crossing still signals, once.
    await api.catalog.AdjustStock(adjust(item.id, -5, "store"))
    assert [t for t, _ in await counts.events_of(server, "stock.low")] == ["stock.low"]


async def test_a_sale_that_runs_out_its_time_gives_its_unsold_units_back(server: Running) -> None:
    api = server.api
    item = await api.item(kind=PHYSICAL, stock=10)
    campaign = await api.campaign(item_id=item.id, units=6, kind=PHYSICAL)
    member = await api.member(points=5000)
    await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)
    async with server.app.pool.connection() as conn:  # the window closed a minute ago
        await conn.execute(
            "UPDATE campaigns SET starts_at = now() - interval '2 hours', "
            "ends_at = now() - interval '1 minute' WHERE id = %s",
            (campaign.id,),
        )
    report = await server.app.sweeper.sweep_once()
    assert report.allotments_released == 1
    assert await levels(server, item.id) == {"default": (9, 0)}
    got = await api.get_campaign(campaign.id)
    assert got.units_allotted == 1  # what it sold
    assert (await server.app.sweeper.sweep_once()).allotments_released == 0
    released = await rows(
        server,
        "SELECT allotted_delta, actor FROM stock_movements WHERE kind = 'released'",
    )
    assert released == [(-5, "system")]
    assert (await settled_audit(server)).ok


async def test_input_with_control_characters_is_refused_naming_the_field(
    server: Running,
) -> None:
    item = await server.api.item(stock=1)
    ledger = stock_pb2_grpc.StockServiceStub(server.channel)
    calls: list[tuple[Any, str]] = [
        (counts.stub(server).SubmitStockCount(count("SKU\x00", 1)), "lines[0].sku"),
        (
            counts.stub(server).SubmitStockCount(
                stock_counts_pb2.SubmitStockCountRequest(
                    location_code="de\x00fault",
                    idempotency_key=key(),
                    lines=[stock_counts_pb2.StockCountLine(sku=item.sku, counted_units=1)],
                )
            ),
            "location_code",
        ),
        (
            ledger.ListStockMovements(
                stock_pb2.ListStockMovementsRequest(item_id=item.id, location_code="x\x00")
            ),
            "location_code",
        ),
    ]
    for pending, field in calls:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await pending
        got = failure(e.value)
        assert (got.code, got.field) == (grpc.StatusCode.INVALID_ARGUMENT, field)
    unchanged = await server.api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item.id))
    assert unchanged.stock_on_hand == 1
    assert await rows(server, "SELECT count(*) FROM stock_counts") == [(0,)]


async def test_raising_an_allotment_draws_from_the_campaigns_own_locations_first(
    server: Running,
) -> None:
    api = server.api
    for code in ("north", "south"):
        await location(server, code)
    item = await api.item(kind=PHYSICAL, stock=4)  # at the default location
    for where in ("north", "south"):
        await api.catalog.AdjustStock(adjust(item.id, 3, where))
    campaign = await api.campaigns.CreateCampaign(allotted(item.id, south=2))

    async def raise_to(units: int) -> None:
        await api.campaigns.UpdateCampaign(
            campaign_pb2.UpdateCampaignRequest(
                campaign=campaign_pb2.Campaign(id=campaign.id, units_allotted=units),
                update_mask=field_mask_pb2.FieldMask(paths=["units_allotted"]),
            )
        )

    await raise_to(3)  # south has one more: it comes from there, not the default
    assert await levels(server, item.id) == {"default": (4, 0), "north": (3, 0), "south": (3, 3)}
    await raise_to(6)  # south is out: then the default location first, as a new campaign
    assert await levels(server, item.id) == {"default": (4, 3), "north": (3, 0), "south": (3, 3)}
    assert await rows(
        server,
        "SELECT l.code, cs.remaining FROM campaign_stock cs "
        "JOIN locations l ON l.id = cs.location_id ORDER BY cs.position",
    ) == [("south", 3), ("default", 3)]
    assert (await settled_audit(server)).ok
