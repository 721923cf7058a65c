"""Locations over gRPC: creating and listing them, transfers between them, and the location
fields of CreateItem, AdjustStock and CreateCampaign, checked against the stock ledger's
rows and `surge audit`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from loyalty.v1 import (
    campaign_pb2,
    catalog_pb2,
    common_pb2,
    locations_pb2,
    locations_pb2_grpc,
    redemption_pb2,
)
from tests.conftest import Running
from tests.factories import ADDRESS, failure, key, ts
from tests.flashsale.helpers import settled_audit

PHYSICAL = common_pb2.ITEM_KIND_PHYSICAL


def stub(server: Running) -> locations_pb2_grpc.LocationServiceAsyncStub:
    return locations_pb2_grpc.LocationServiceStub(server.channel)


async def location(server: Running, code: str, name: str = "") -> locations_pb2.Location:
    created = await stub(server).CreateLocation(
        locations_pb2.CreateLocationRequest(code=code, name=name or code.title())
    )
    return created.location


def transfer(
    item_id: str, src: str, dst: str, quantity: int, idem: str | None = None, reason: str = "move"
) -> locations_pb2.TransferStockRequest:
    return locations_pb2.TransferStockRequest(
        item_id=item_id,
        from_location_code=src,
        to_location_code=dst,
        quantity=quantity,
        reason=reason,
        idempotency_key=idem or key(),
    )


def adjust(
    item_id: str,
    delta: int,
    where: str = "",
    kind: catalog_pb2.AdjustmentKind.ValueType = catalog_pb2.ADJUSTMENT_KIND_UNSPECIFIED,
    idem: str | None = None,
) -> catalog_pb2.AdjustStockRequest:
    return catalog_pb2.AdjustStockRequest(
        item_id=item_id,
        delta=delta,
        reason="count",
        idempotency_key=idem or key(),
        location_code=where,
        movement_kind=kind,
    )


async def rows(server: Running, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with server.app.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())


async def levels(server: Running, item_id: str) -> dict[str, tuple[int, int]]:
    """code -> (on_hand, allotted) of the item's levels."""
    found = await rows(
        server,
        "SELECT l.code, s.on_hand, s.allotted FROM stock_levels s "
        "JOIN locations l ON l.id = s.location_id WHERE s.item_id = %s",
        item_id,
    )
    return {code: (on_hand, allotted) for code, on_hand, allotted in found}


async def movements(server: Running, item_id: str) -> list[tuple[str, str, int, str | None]]:
    """(kind, location code, on_hand_delta, reference) of the item's movements, in order."""
    found = await rows(
        server,
        "SELECT m.kind, l.code, m.on_hand_delta, m.reference FROM stock_movements m "
        "JOIN locations l ON l.id = m.location_id WHERE m.item_id = %s ORDER BY m.id",
        item_id,
    )
    return [(str(k), str(c), int(d), r) for k, c, d, r in found]


def allotted(item_id: str, units: int = 0, **by_location: int) -> Any:
    """A running campaign of the item drawn from locations, in keyword order."""
    starts = datetime.now(UTC) - timedelta(seconds=60)
    return campaign_pb2.CreateCampaignRequest(
        item_id=item_id,
        name="By location",
        units_allotted=units or sum(by_location.values()),
        points_price=100,
        per_member_limit=5,
        starts_at=ts(starts),
        ends_at=ts(starts + timedelta(hours=1)),
        allotments=[
            campaign_pb2.CampaignAllotment(location_code=c, units=u) for c, u in by_location.items()
        ],
    )


async def refused(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return failure(error.value)


async def test_create_and_list_locations_default_first_and_a_replay_returns_the_same(
    server: Running,
) -> None:
    north = await location(server, "north", "North warehouse")
    await location(server, "a-store", "A store")
    again = await stub(server).CreateLocation(
        locations_pb2.CreateLocationRequest(code="north", name="North warehouse")
    )
    clash = await refused(
        stub(server).CreateLocation(locations_pb2.CreateLocationRequest(code="north", name="Other"))
    )
    listed = await stub(server).ListLocations(locations_pb2.ListLocationsRequest())

    assert again.replayed and again.location == north
    assert clash.code == grpc.StatusCode.ALREADY_EXISTS
    assert [x.code for x in listed.locations] == ["default", "a-store", "north"]
    assert await rows(
        server,
        "SELECT action, target_id FROM audit_events WHERE action = 'location.create_location' "
        "ORDER BY id",
    ) == [
        ("location.create_location", north.id),
        ("location.create_location", listed.locations[1].id),
    ]


@pytest.mark.parametrize(
    ("code", "name", "field"),
    [
        ("", "A", "code"),
        ("North", "A", "code"),
        ("-north", "A", "code"),
        ("has space", "A", "code"),
        ("north\n", "A", "code"),
        ("n" * 65, "A", "code"),
        ("north", "", "name"),
        ("north", "n" * 201, "name"),
    ],
)
async def test_a_bad_code_or_name_is_refused_naming_the_field(
    server: Running, code: str, name: str, field: str
) -> None:
    bad = await refused(
        stub(server).CreateLocation(locations_pb2.CreateLocationRequest(code=code, name=name))
    )
    assert (bad.code, bad.field) == (grpc.StatusCode.INVALID_ARGUMENT, field)
    assert await rows(server, "SELECT count(*) FROM locations") == [(1,)]


async def test_a_transfer_is_two_paired_movements_and_keeps_available_stock(
    server: Running,
) -> None:
    api = server.api
    await location(server, "north")
    item = await api.item(kind=PHYSICAL, stock=10)

    done = await stub(server).TransferStock(transfer(item.id, "default", "north", 4))

    reference = f"transfer:{done.transfer.id}"
    assert not done.replayed
    assert (done.transfer.from_location_code, done.transfer.to_location_code) == (
        "default",
        "north",
    )
    assert await levels(server, item.id) == {"default": (6, 0), "north": (4, 0)}
    assert (await movements(server, item.id))[1:] == [
        ("transferred_out", "default", -4, reference),
        ("transferred_in", "north", 4, reference),
    ]
    fetched = await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item.id))
    assert fetched.stock_on_hand == 10
    assert await rows(
        server,
        "SELECT payload->>'transfer_id', payload->>'quantity' FROM events "
        "WHERE type = 'stock.transferred'",
    ) == [(done.transfer.id, "4")]
    assert await rows(
        server, "SELECT target_id FROM audit_events WHERE action = 'location.transfer_stock'"
    ) == [(item.id,)]


async def test_bad_transfers_are_refused_clearly_and_change_nothing(server: Running) -> None:
    api = server.api
    await location(server, "north")
    item = await api.item(kind=PHYSICAL, stock=5)
    before = (await levels(server, item.id), await movements(server, item.id))
    call = stub(server).TransferStock

    same = await refused(call(transfer(item.id, "north", "north", 1)))
    zero = await refused(call(transfer(item.id, "default", "north", 0)))
    negative = await refused(call(transfer(item.id, "default", "north", -2)))
    unknown = await refused(call(transfer(item.id, "default", "nowhere", 1)))
    no_item = await refused(call(transfer(str(uuid.uuid4()), "default", "north", 1)))
    malformed = await refused(call(transfer(item.id, "Default", "north", 1)))
    too_many = await refused(call(transfer(item.id, "default", "north", 6)))
    empty_source = await refused(call(transfer(item.id, "north", "default", 1)))

    assert (same.code, same.field) == (grpc.StatusCode.INVALID_ARGUMENT, "to_location_code")
    assert (zero.code, zero.field) == (grpc.StatusCode.INVALID_ARGUMENT, "quantity")
    assert (negative.code, negative.field) == (grpc.StatusCode.INVALID_ARGUMENT, "quantity")
    assert (unknown.code, unknown.metadata) == (
        grpc.StatusCode.NOT_FOUND,
        {"resource": "location", "id": "nowhere"},
    )
    assert no_item.code == grpc.StatusCode.NOT_FOUND
    assert (malformed.code, malformed.field) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "from_location_code",
    )
    assert (too_many.code, too_many.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_STOCK",
    )
    assert too_many.metadata == {
        "item_id": item.id,
        "location_code": "default",
        "stock_on_hand": "5",
    }
    assert empty_source.metadata["stock_on_hand"] == "0"
    assert (await levels(server, item.id), await movements(server, item.id)) == before
    assert await rows(server, "SELECT count(*) FROM stock_transfers") == [(0,)]
    assert await rows(server, "SELECT count(*) FROM events WHERE type = 'stock.transferred'") == [
        (0,)
    ]


async def test_units_allotted_to_a_campaign_cannot_be_transferred(server: Running) -> None:
    api = server.api
    await location(server, "north")
    item = await api.item(kind=PHYSICAL, stock=10)
    await api.campaign(units=8, item_id=item.id)

    short = await refused(stub(server).TransferStock(transfer(item.id, "default", "north", 3)))
    moved = await stub(server).TransferStock(transfer(item.id, "default", "north", 2))

    assert (short.reason, short.metadata["stock_on_hand"]) == ("INSUFFICIENT_STOCK", "2")
    assert moved.transfer.quantity == 2
    assert await levels(server, item.id) == {"default": (8, 8), "north": (2, 0)}


async def test_a_transfer_replays_by_key_and_refuses_the_key_for_another_request(
    server: Running,
) -> None:
    api = server.api
    await location(server, "north")
    item = await api.item(kind=PHYSICAL, stock=10)
    call = stub(server).TransferStock

    first = await call(transfer(item.id, "default", "north", 3, idem="t-1"))
    replay = await call(transfer(item.id, "default", "north", 3, idem="t-1"))
    other_quantity = await refused(call(transfer(item.id, "default", "north", 4, idem="t-1")))
    other_way = await refused(call(transfer(item.id, "north", "default", 3, idem="t-1")))
    other_reason = await refused(
        call(transfer(item.id, "default", "north", 3, idem="t-1", reason="other"))
    )

    assert replay.replayed and replay.transfer == first.transfer
    for reused in (other_quantity, other_way, other_reason):
        assert reused.reason == "IDEMPOTENCY_KEY_REUSED"
    assert await levels(server, item.id) == {"default": (7, 0), "north": (3, 0)}
    assert len(await movements(server, item.id)) == 3  # received, out, in: once


async def test_concurrent_transfers_and_adjustments_lose_no_update(server: Running) -> None:
    api = server.api
    await location(server, "north")
    item = await api.item(kind=PHYSICAL, stock=100)
    await api.catalog.AdjustStock(
        adjust(item.id, 100, "north", catalog_pb2.ADJUSTMENT_KIND_RECEIVED)
    )
    move = stub(server).TransferStock

    results = await asyncio.gather(
        *[move(transfer(item.id, "default", "north", 3)) for _ in range(10)],
        *[move(transfer(item.id, "north", "default", 2)) for _ in range(10)],
        *[api.catalog.AdjustStock(adjust(item.id, 1, "north")) for _ in range(5)],
        *[
            api.catalog.AdjustStock(
                adjust(item.id, -1, "default", catalog_pb2.ADJUSTMENT_KIND_WRITTEN_OFF)
            )
            for _ in range(5)
        ],
        *[api.catalog.AdjustStock(adjust(item.id, -1)) for _ in range(5)],  # default first
        *[api.campaigns.CreateCampaign(allotted(item.id, north=5)) for _ in range(2)],
        return_exceptions=True,
    )

    assert [r for r in results if isinstance(r, BaseException)] == []
    assert await levels(server, item.id) == {
        "default": (100 - 30 + 20 - 5 - 5, 0),
        "north": (100 + 30 - 20 + 5, 10),
    }
    fetched = await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item.id))
    assert fetched.stock_on_hand == 80 + 115 - 10
    assert await rows(
        server,
        "SELECT count(*), sum(on_hand_delta) FROM stock_movements "
        "WHERE kind IN ('transferred_out', 'transferred_in')",
    ) == [(40, 0)]
    report = await settled_audit(server)
    assert report.ok, report.violations


async def test_a_campaign_drawn_from_two_locations_sells_them_in_order(server: Running) -> None:
    api = server.api
    await location(server, "north")
    await location(server, "south")
    item = await api.item(kind=PHYSICAL, stock=0)
    for where, units in (("north", 3), ("south", 2)):
        await api.catalog.AdjustStock(
            adjust(item.id, units, where, catalog_pb2.ADJUSTMENT_KIND_RECEIVED)
        )
    create = api.campaigns.CreateCampaign

    wrong_sum = await refused(create(allotted(item.id, 5, south=2, north=2)))
    same_twice = allotted(item.id, 5, north=3)
    same_twice.allotments.add(location_code="north", units=2)
    twice = await refused(create(same_twice))
    unknown = await refused(create(allotted(item.id, south=2, east=3)))
    short = await refused(create(allotted(item.id, south=1, north=4)))
    assert (wrong_sum.code, wrong_sum.field) == (grpc.StatusCode.INVALID_ARGUMENT, "allotments")
    assert (twice.code, twice.field) == (grpc.StatusCode.INVALID_ARGUMENT, "allotments")
    assert "twice" in twice.message and "add up to 4" in wrong_sum.message
    assert unknown.code == grpc.StatusCode.NOT_FOUND
    assert (short.reason, short.metadata["location_code"], short.metadata["item_id"]) == (
        "INSUFFICIENT_STOCK",
        "north",
        item.id,
    )
    assert await rows(server, "SELECT count(*) FROM campaigns") == [(0,)]

    campaign = await create(allotted(item.id, south=2, north=3))
    member = await api.member(points=1000)
    sold = [
        (await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)).redemption
        for _ in range(5)
    ]
    taken = await rows(
        server,
        "SELECT m.redemption_id::text, l.code FROM stock_movements m "
        "JOIN locations l ON l.id = m.location_id WHERE m.kind = 'redeemed' ORDER BY m.id",
    )
    assert {r.status for r in sold} == {redemption_pb2.REDEMPTION_STATUS_COMMITTED}
    assert taken == [
        (r.id, code) for r, code in zip(sold, ["south"] * 2 + ["north"] * 3, strict=True)
    ]
    assert await levels(server, item.id) == {"north": (0, 0), "south": (0, 0)}

    await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(
            redemption_id=sold[0].id, member_id=member.id, reason="changed my mind"
        )
    )

    assert await levels(server, item.id) == {"north": (0, 0), "south": (1, 1)}
    assert await rows(
        server,
        "SELECT l.code, cs.remaining FROM campaign_stock cs "
        "JOIN locations l ON l.id = cs.location_id ORDER BY cs.position",
    ) == [("south", 1), ("north", 0)]
    report = await settled_audit(server)
    assert report.ok, report.violations


async def test_an_item_created_at_a_named_location_keeps_its_stock_there(server: Running) -> None:
    api = server.api
    await location(server, "north")

    def create(sku: str, where: str) -> Any:
        return api.catalog.CreateItem(
            catalog_pb2.CreateItemRequest(
                sku=sku, name="Mug", kind=PHYSICAL, initial_stock=5, location_code=where
            )
        )

    item = await create("MUG-N", "north")
    unknown = await refused(create("MUG-X", "east"))
    malformed = await refused(create("MUG-Y", "East"))

    assert item.stock_on_hand == 5
    assert await levels(server, item.id) == {"north": (5, 0)}
    assert await movements(server, item.id) == [("received", "north", 5, None)]
    assert unknown.code == grpc.StatusCode.NOT_FOUND
    assert (malformed.code, malformed.field) == (grpc.StatusCode.INVALID_ARGUMENT, "location_code")
    assert await rows(server, "SELECT sku FROM items") == [("MUG-N",)]


async def test_adjust_stock_at_a_location_with_its_movement_kind(server: Running) -> None:
    api = server.api
    await location(server, "north")
    item = await api.item(kind=PHYSICAL, stock=10)
    adjust_stock = api.catalog.AdjustStock
    received, written_off = (
        catalog_pb2.ADJUSTMENT_KIND_RECEIVED,
        catalog_pb2.ADJUSTMENT_KIND_WRITTEN_OFF,
    )

    await adjust_stock(adjust(item.id, 5, "north", received, idem="a-1"))
    replay = await adjust_stock(adjust(item.id, 5, "north", received, idem="a-1"))
    other_place = await refused(adjust_stock(adjust(item.id, 5, "", received, idem="a-1")))
    other_kind = await refused(adjust_stock(adjust(item.id, 5, "north", idem="a-1")))
    await adjust_stock(adjust(item.id, -2, "north", written_off))
    await adjust_stock(adjust(item.id, 1, "north"))
    wrong_sign = [
        await refused(adjust_stock(adjust(item.id, -1, "north", received))),
        await refused(adjust_stock(adjust(item.id, 1, "north", written_off))),
        await refused(adjust_stock(adjust(item.id, 1, "north", 9))),  # type: ignore[arg-type]
    ]
    short = await refused(adjust_stock(adjust(item.id, -5, "north", written_off)))
    unknown = await refused(adjust_stock(adjust(item.id, 1, "east")))

    assert replay.replayed
    assert other_place.reason == other_kind.reason == "IDEMPOTENCY_KEY_REUSED"
    for bad in wrong_sign:
        assert (bad.code, bad.field) == (grpc.StatusCode.INVALID_ARGUMENT, "movement_kind")
    assert (short.reason, short.metadata["location_code"], short.metadata["stock_on_hand"]) == (
        "INSUFFICIENT_STOCK",
        "north",
        "4",
    )
    assert unknown.code == grpc.StatusCode.NOT_FOUND
    assert await levels(server, item.id) == {"default": (10, 0), "north": (4, 0)}
    assert [(k, c, d) for k, c, d, _ in await movements(server, item.id)] == [
        ("received", "default", 10),
        ("received", "north", 5),
        ("written_off", "north", -2),
        ("adjusted", "north", 1),
    ]
    assert await rows(
        server,
        "SELECT payload->>'movement_kind', payload->>'location_code' FROM events "
        "WHERE type = 'stock.adjusted' ORDER BY sequence",
    ) == [("received", "north"), ("written_off", "north"), ("adjusted", "north")]
