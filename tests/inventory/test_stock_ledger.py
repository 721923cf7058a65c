"""The stock ledger through a real server: every change of an item's stock is a movement,
the levels are their sums (the audit checks it), and StockService reads them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from loyalty.v1 import (
    campaign_pb2,
    catalog_pb2,
    common_pb2,
    redemption_pb2,
    stock_pb2,
    stock_pb2_grpc,
)
from tests.conftest import Running
from tests.factories import ADDRESS, failure, key
from tests.flashsale.fulfilment_helpers import Fulfil
from tests.flashsale.helpers import outcomes, settled_audit

S = stock_pb2
PHYSICAL = common_pb2.ITEM_KIND_PHYSICAL
KIND = S.StockMovementKind.Name


@pytest.fixture
def stock(server: Running) -> stock_pb2_grpc.StockServiceAsyncStub:
    return stock_pb2_grpc.StockServiceStub(server.channel)


@pytest.fixture
async def fulfil(server: Running) -> AsyncIterator[Fulfil]:
    f = Fulfil.on(server)
    yield f
    await f.close()


async def movements(stub: Any, item_id: str, **filters: Any) -> list[S.StockMovement]:
    """Every movement of the item, page after page."""
    found: list[S.StockMovement] = []
    token = ""
    while True:
        page = await stub.ListStockMovements(
            S.ListStockMovementsRequest(item_id=item_id, page_token=token, **filters)
        )
        found += page.movements
        token = page.next_page_token
        if not token:
            return found


async def levels(stub: Any, item_id: str) -> tuple[int, int, int, int]:
    got = await stub.GetStockLevels(S.GetStockLevelsRequest(item_id=item_id))
    return (got.on_hand, got.allotted, got.available, got.committed)


def adjust(item_id: str, delta: int) -> catalog_pb2.AdjustStockRequest:
    return catalog_pb2.AdjustStockRequest(
        item_id=item_id, delta=delta, reason="shelf check", idempotency_key=key()
    )


async def test_each_change_is_a_movement_and_the_levels_are_their_sums(
    server: Running, stock: Any
) -> None:
    api = server.api
    item = await api.item(stock=20, kind=PHYSICAL)
    await api.catalog.AdjustStock(adjust(item.id, 5))
    await api.catalog.AdjustStock(adjust(item.id, -3))
    campaign = await api.campaign(item_id=item.id, units=10)
    member = await api.member(points=1000)
    first = (await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)).redemption
    await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)
    await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(
            redemption_id=first.id, member_id=member.id, reason="changed my mind"
        )
    )
    assert await levels(stock, item.id) == (21, 9, 12, 1)  # one sold, 9 still allotted
    await api.campaigns.UpdateCampaign(
        campaign_pb2.UpdateCampaignRequest(
            campaign=campaign_pb2.Campaign(id=campaign.id, units_allotted=6),
            update_mask=field_mask_pb2.FieldMask(paths=["units_allotted"]),
        )
    )
    await api.campaigns.EndCampaign(campaign_pb2.EndCampaignRequest(campaign_id=campaign.id))

    moved = await movements(stock, item.id)
    assert [(KIND(m.kind), m.on_hand_delta, m.allotted_delta) for m in moved] == [
        ("STOCK_MOVEMENT_KIND_RECEIVED", 20, 0),
        ("STOCK_MOVEMENT_KIND_ADJUSTED", 5, 0),
        ("STOCK_MOVEMENT_KIND_ADJUSTED", -3, 0),
        ("STOCK_MOVEMENT_KIND_ALLOTTED", 0, 10),
        ("STOCK_MOVEMENT_KIND_REDEEMED", -1, -1),
        ("STOCK_MOVEMENT_KIND_REDEEMED", -1, -1),
        ("STOCK_MOVEMENT_KIND_CANCELLED", 1, 1),
        ("STOCK_MOVEMENT_KIND_RELEASED", 0, -4),  # allotment 10 -> 6
        ("STOCK_MOVEMENT_KIND_RELEASED", 0, -5),  # ended early: all but the one sold
    ]
    assert {m.location_code for m in moved} == {"default"}
    assert moved[6].redemption_id == first.id and moved[6].reason == "changed my mind"
    assert moved[1].reference.startswith("adjustment:") and moved[1].reason == "shelf check"
    assert moved[3].campaign_id == campaign.id
    assert moved[1].actor  # the credential's subject
    assert sum(m.on_hand_delta for m in moved) == 21
    assert await levels(stock, item.id) == (21, 0, 21, 1)
    fetched = await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item.id))
    assert fetched.stock_on_hand == 21  # the item's available units
    assert (await settled_audit(server)).ok


async def test_returns_restocked_written_off_and_exchanged(fulfil: Fulfil, stock: Any) -> None:
    restocked = await fulfil.advance_to("RETURNED")  # accepted with RESTOCK
    written = await fulfil.advance_to("RETURN_REQUESTED")
    await fulfil.accept(written, redemption_pb2.RETURN_DISPOSITION_WRITE_OFF)
    exchanged = await fulfil.advance_to("RETURN_REQUESTED")
    await fulfil.running.api.catalog.AdjustStock(adjust(await item_of(fulfil, exchanged), 1))
    swapped = await fulfil.accept(exchanged, exchange=True)

    async def kinds(r: redemption_pb2.Redemption) -> list[tuple[str, int, int]]:
        item = await item_of(fulfil, r)
        return [
            (KIND(m.kind), m.on_hand_delta, m.allotted_delta)
            for m in await movements(stock, item, redemption_id=r.id)
        ]

    assert await kinds(restocked) == [
        ("STOCK_MOVEMENT_KIND_REDEEMED", -1, -1),
        ("STOCK_MOVEMENT_KIND_RETURNED", 1, 0),
    ]
    assert await kinds(written) == [
        ("STOCK_MOVEMENT_KIND_REDEEMED", -1, -1),
        ("STOCK_MOVEMENT_KIND_RETURNED", 1, 0),
        ("STOCK_MOVEMENT_KIND_WRITTEN_OFF", -1, 0),
    ]
    replacement = swapped.replaced_by
    assert replacement
    item = await item_of(fulfil, exchanged)
    taken = await movements(stock, item, redemption_id=replacement)
    # The replacement's unit comes from available stock, not from the campaign.
    assert [(KIND(m.kind), m.on_hand_delta, m.allotted_delta) for m in taken] == [
        ("STOCK_MOVEMENT_KIND_REDEEMED", -1, 0)
    ]
    assert (await settled_audit(fulfil.running)).ok


async def item_of(fulfil: Fulfil, r: redemption_pb2.Redemption) -> str:
    campaign = await fulfil.running.api.get_campaign(r.campaign_id)
    return campaign.item_id


async def test_after_a_surge_with_cancellations_on_hand_is_the_sum_of_movements(
    server: Running, stock: Any
) -> None:
    api = server.api
    item = await api.item(stock=40, kind=PHYSICAL)
    campaign = await api.campaign(item_id=item.id, units=12, limit=2)
    members = [await api.member(points=500) for _ in range(30)]
    ok, refused = await outcomes(
        api.redeem(m.id, campaign.id, shipping_address=ADDRESS) for m in members
    )
    assert len(ok) == 12 and refused["SOLD_OUT"] == 18
    for response in ok[:4]:
        r = response.redemption
        await api.redemptions.CancelRedemption(
            redemption_pb2.CancelRedemptionRequest(
                redemption_id=r.id, member_id=r.member_id, reason="cancel"
            )
        )
    moved = await movements(stock, item.id)
    on_hand, allotted, available, committed = await levels(stock, item.id)
    assert (on_hand, allotted, available, committed) == (32, 4, 28, 8)
    assert sum(m.on_hand_delta for m in moved) == on_hand
    assert sum(m.allotted_delta for m in moved) == allotted
    assert (await settled_audit(server)).ok


async def test_concurrent_adjustments_and_allotments_lose_no_update(
    server: Running, stock: Any
) -> None:
    api = server.api
    item = await api.item(stock=100)
    adds = [api.catalog.AdjustStock(adjust(item.id, 3)) for _ in range(15)]
    takes = [api.catalog.AdjustStock(adjust(item.id, -2)) for _ in range(15)]
    campaigns = [api.campaign(item_id=item.id, units=5) for _ in range(6)]
    ok, refused = await outcomes([*adds, *takes, *campaigns])
    assert len(ok) == 36 and not refused
    assert await levels(stock, item.id) == (115, 30, 85, 0)
    assert (
        await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item.id))
    ).stock_on_hand == 85
    assert (await settled_audit(server)).ok


async def test_an_allotment_larger_than_available_changes_nothing(
    server: Running, stock: Any
) -> None:
    api = server.api
    item = await api.item(stock=5)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await api.campaign(item_id=item.id, units=6)
    assert failure(e.value).reason == "INSUFFICIENT_STOCK"
    assert [KIND(m.kind) for m in await movements(stock, item.id)] == [
        "STOCK_MOVEMENT_KIND_RECEIVED"
    ]
    assert await levels(stock, item.id) == (5, 0, 5, 0)


async def test_movements_page_and_filter(server: Running, stock: Any) -> None:
    api = server.api
    item = await api.item(stock=10)
    for delta in (1, 2, 3, 4, 5):
        await api.catalog.AdjustStock(adjust(item.id, delta))
    campaign = await api.campaign(item_id=item.id, units=3)
    first = await stock.ListStockMovements(
        S.ListStockMovementsRequest(item_id=item.id, page_size=4)
    )
    assert len(first.movements) == 4 and first.next_page_token
    rest = await stock.ListStockMovements(
        S.ListStockMovementsRequest(item_id=item.id, page_size=4, page_token=first.next_page_token)
    )
    assert len(rest.movements) == 3 and not rest.next_page_token
    ids = [m.id for m in [*first.movements, *rest.movements]]
    assert ids == sorted(ids) and len(set(ids)) == 7
    adjusted = await movements(stock, item.id, kinds=[S.STOCK_MOVEMENT_KIND_ADJUSTED])
    assert [m.on_hand_delta for m in adjusted] == [1, 2, 3, 4, 5]
    allotted = await movements(stock, item.id, campaign_id=campaign.id)
    assert [KIND(m.kind) for m in allotted] == ["STOCK_MOVEMENT_KIND_ALLOTTED"]
    assert len(await movements(stock, item.id, location_code="default")) == 7


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (S.ListStockMovementsRequest(item_id="nope"), "INVALID_ARGUMENT", "item_id"),
        (S.ListStockMovementsRequest(item_id=str(uuid.uuid4())), "NOT_FOUND", None),
        (S.ListStockMovementsRequest(page_token="garbage"), "INVALID_ARGUMENT", "page_token"),
        (S.ListStockMovementsRequest(page_size=101), "INVALID_ARGUMENT", "page_size"),
        (
            S.ListStockMovementsRequest(kinds=[S.STOCK_MOVEMENT_KIND_UNSPECIFIED]),
            "INVALID_ARGUMENT",
            "kinds",
        ),
        (S.ListStockMovementsRequest(location_code="nowhere"), "NOT_FOUND", None),
        (S.ListStockMovementsRequest(campaign_id="x"), "INVALID_ARGUMENT", "campaign_id"),
    ],
)
async def test_bad_movement_queries_name_the_field(
    server: Running, stock: Any, request_: S.ListStockMovementsRequest, code: str, field: str | None
) -> None:
    item = await server.api.item(stock=1)
    if not request_.item_id:
        request_.item_id = item.id
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stock.ListStockMovements(request_)
    got = failure(e.value)
    assert got.code.name == code
    if field:
        assert got.field == field


async def test_levels_of_an_unknown_item_are_not_found(stock: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stock.GetStockLevels(S.GetStockLevelsRequest(item_id=str(uuid.uuid4())))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_pending_payment_leaves_stock_allotted_until_confirmed(
    server: Running, stock: Any
) -> None:
    api = server.api
    item = await api.item(stock=5, kind=PHYSICAL)
    campaign = await api.campaign(item_id=item.id, units=3, cash_price_cents=500)
    member = await api.member(points=1000)
    pending = (await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)).redemption
    got = await stock.GetStockLevels(S.GetStockLevelsRequest(item_id=item.id))
    assert (got.on_hand, got.allotted, got.held, got.committed) == (5, 3, 1, 0)
    await api.redemptions.ConfirmPayment(
        redemption_pb2.ConfirmPaymentRequest(
            redemption_id=pending.id,
            member_id=member.id,
            payment_reference="psp-" + uuid.uuid4().hex,
            amount_cents=500,
            currency="CNY",
        )
    )
    got = await stock.GetStockLevels(S.GetStockLevelsRequest(item_id=item.id))
    assert (got.on_hand, got.allotted, got.held, got.committed) == (4, 2, 0, 1)
    assert (await settled_audit(server)).ok


async def test_a_unit_cancelled_after_the_end_is_released_by_ending_again(
    server: Running, stock: Any
) -> None:
    """A cancel puts its unit back into its campaign's allotment, even an ended one's (the
    campaign's counters say so); EndCampaign again gives it back to the item."""
    api = server.api
    item = await api.item(stock=10, kind=PHYSICAL)
    campaign = await api.campaign(item_id=item.id, units=4)
    member = await api.member(points=1000)
    sold = (await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)).redemption
    await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)
    await api.campaigns.EndCampaign(campaign_pb2.EndCampaignRequest(campaign_id=campaign.id))
    assert await levels(stock, item.id) == (8, 0, 8, 2)
    await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(
            redemption_id=sold.id, member_id=member.id, reason="late cancel"
        )
    )
    assert await levels(stock, item.id) == (9, 1, 8, 1)
    await api.campaigns.EndCampaign(campaign_pb2.EndCampaignRequest(campaign_id=campaign.id))
    assert await levels(stock, item.id) == (9, 0, 9, 1)
    released = await movements(stock, item.id, kinds=[S.STOCK_MOVEMENT_KIND_RELEASED])
    assert [m.allotted_delta for m in released] == [-2, -1]
    assert (await settled_audit(server)).ok
