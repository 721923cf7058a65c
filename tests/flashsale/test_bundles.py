"""Bundles through a real server: a campaign selling several items as one unit. Its
allotment is in bundles, each part's stock moves by the part's quantity, it sells out on
its scarcest item, and cancels, returns and ends move every part (flashsale/bundles.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
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
from tests.factories import ADDRESS, failure, ts
from tests.flashsale.fulfilment_helpers import Fulfil
from tests.flashsale.helpers import outcomes, settled_audit

C = campaign_pb2
PHYSICAL = common_pb2.ITEM_KIND_PHYSICAL
SERVICE = common_pb2.ITEM_KIND_SERVICE  # cancellable after commit (no code issued)


@pytest.fixture
def stock(server: Running) -> stock_pb2_grpc.StockServiceAsyncStub:
    return stock_pb2_grpc.StockServiceStub(server.channel)


@pytest.fixture
async def fulfil(server: Running) -> AsyncIterator[Fulfil]:
    f = Fulfil.on(server)
    yield f
    await f.close()


async def levels(stock: Any, item_id: str) -> tuple[int, int, int]:
    """(on hand, allotted, available) of an item, summed over its locations."""
    got = await stock.GetStockLevels(stock_pb2.GetStockLevelsRequest(item_id=item_id))
    return (got.on_hand, got.allotted, got.available)


def bundle_request(
    parts: list[tuple[str, int]], *, units: int = 0, item_id: str = "", **extra: Any
) -> C.CreateCampaignRequest:
    starts = datetime.now(UTC) - timedelta(seconds=60)
    return C.CreateCampaignRequest(
        item_id=item_id,
        name="Breakfast set",
        units_allotted=units,
        points_price=100,
        per_member_limit=5,
        starts_at=ts(starts),
        ends_at=ts(starts + timedelta(hours=1)),
        bundle_parts=[C.BundlePart(item_id=i, quantity=q) for i, q in parts],
        **extra,
    )


async def two_items(
    server: Running, a: int, b: int, kind: common_pb2.ItemKind.ValueType = SERVICE
) -> tuple[str, str]:
    return (
        (await server.api.item(kind=kind, stock=a)).id,
        (await server.api.item(kind=kind, stock=b)).id,
    )


async def test_a_bundle_sells_out_on_its_scarcest_item(server: Running, stock: Any) -> None:
    """A has 10, B has 3: a bundle of A x2 + B x1 fits 3 times. Of many redeems at once,
    exactly 3 sell, the rest are SOLD_OUT, and every part's stock took its share."""
    api = server.api
    a, b = await two_items(server, 10, 3)

    campaign = await api.campaigns.CreateCampaign(bundle_request([(a, 2), (b, 1)]))

    assert campaign.units_allotted == 3 and campaign.units_remaining == 3
    assert campaign.item_id == a  # the lead item: the first part
    assert [(p.item_id, p.quantity) for p in campaign.bundle_parts] == [(a, 2), (b, 1)]
    assert await levels(stock, a) == (10, 6, 4)
    assert await levels(stock, b) == (3, 3, 0)

    members = [await api.member(points=1000) for _ in range(8)]
    ok, refused = await outcomes(api.redeem(m.id, campaign.id) for m in members)

    assert len(ok) == 3 and refused == {"SOLD_OUT": 5}
    assert [(p.item_id, p.quantity) for p in ok[0].redemption.bundle_parts] == [(a, 2), (b, 1)]
    after = await api.get_campaign(campaign.id)
    assert (after.units_committed, after.units_remaining) == (3, 0)
    # 3 bundles left: 6 of A, 3 of B; A's other 4 were never allotted.
    assert await levels(stock, a) == (4, 0, 4)
    assert await levels(stock, b) == (0, 0, 0)
    got = await api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(
            redemption_id=ok[0].redemption.id, member_id=ok[0].redemption.member_id
        )
    )
    assert [(p.item_id, p.quantity) for p in got.bundle_parts] == [(a, 2), (b, 1)]
    assert (await settled_audit(server)).ok


async def test_more_bundles_than_the_scarcest_item_allows_change_nothing(
    server: Running, stock: Any
) -> None:
    api = server.api
    a, b = await two_items(server, 10, 3)

    with pytest.raises(grpc.aio.AioRpcError) as short:
        await api.campaigns.CreateCampaign(bundle_request([(a, 2), (b, 1)], units=4))

    got = failure(short.value)
    assert (got.code, got.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_STOCK")
    assert got.metadata["item_id"] == b
    assert await levels(stock, a) == (10, 0, 10)
    assert await levels(stock, b) == (3, 0, 3)
    # A bundle with nothing to sell is refused too, naming the item short of one bundle.
    empty = (await api.item(kind=SERVICE, stock=1)).id
    with pytest.raises(grpc.aio.AioRpcError) as none:
        await api.campaigns.CreateCampaign(bundle_request([(a, 1), (empty, 2)]))
    assert failure(none.value).metadata["item_id"] == empty
    listed = await api.campaigns.ListCampaigns(C.ListCampaignsRequest())
    assert list(listed.campaigns) == []


async def test_a_cancel_returns_every_part(server: Running, stock: Any) -> None:
    api = server.api
    a, b = await two_items(server, 10, 10)
    campaign = await api.campaigns.CreateCampaign(bundle_request([(a, 2), (b, 1)], units=4))
    member = await api.member(points=1000)
    redeemed = (await api.redeem(member.id, campaign.id, quantity=2)).redemption
    assert await levels(stock, a) == (6, 4, 2)  # 8 allotted, 4 left with the redemption
    assert await levels(stock, b) == (8, 2, 6)

    cancelled = await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(
            redemption_id=redeemed.id, member_id=member.id, reason="changed my mind"
        )
    )

    assert cancelled.status == redemption_pb2.REDEMPTION_STATUS_CANCELLED
    assert await levels(stock, a) == (10, 8, 2)
    assert await levels(stock, b) == (10, 4, 6)
    after = await api.get_campaign(campaign.id)
    assert (after.units_committed, after.units_remaining) == (0, 4)
    assert (await api.balance(member.id)).balance == 1000
    assert (await settled_audit(server)).ok


async def test_a_return_brings_back_every_part_and_an_exchange_is_refused(
    server: Running, stock: Any, fulfil: Fulfil
) -> None:
    api = server.api
    a, b = await two_items(server, 6, 6, PHYSICAL)
    campaign = await api.campaigns.CreateCampaign(bundle_request([(a, 3), (b, 1)], units=2))
    member = await api.member(points=1000)
    r = (await api.redeem(member.id, campaign.id, quantity=2, shipping_address=ADDRESS)).redemption
    r = await fulfil.request_return(await fulfil.deliver(await fulfil.ship(await fulfil.pack(r))))
    assert await levels(stock, a) == (0, 0, 0)
    assert await levels(stock, b) == (4, 0, 4)

    with pytest.raises(grpc.aio.AioRpcError) as exchange:
        await fulfil.accept(r, exchange=True)
    refused = failure(exchange.value)
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INVALID_TRANSITION",
    )
    assert await levels(stock, a) == (0, 0, 0)

    returned = await fulfil.accept(r, redemption_pb2.RETURN_DISPOSITION_RESTOCK)

    assert returned.status == redemption_pb2.REDEMPTION_STATUS_RETURNED
    assert await levels(stock, a) == (6, 0, 6)
    assert await levels(stock, b) == (6, 0, 6)
    assert (await api.balance(member.id)).balance == 1000
    assert (await settled_audit(server)).ok


async def test_a_written_off_return_writes_off_every_part(
    server: Running, stock: Any, fulfil: Fulfil
) -> None:
    api = server.api
    a, b = await two_items(server, 4, 4, PHYSICAL)
    campaign = await api.campaigns.CreateCampaign(bundle_request([(a, 2), (b, 1)], units=2))
    member = await api.member(points=1000)
    r = (await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)).redemption
    r = await fulfil.request_return(await fulfil.deliver(await fulfil.ship(await fulfil.pack(r))))

    await fulfil.accept(r, redemption_pb2.RETURN_DISPOSITION_WRITE_OFF)

    # Still allotted to the campaign: the unsold bundle; the sold one is gone for good.
    assert await levels(stock, a) == (2, 2, 0)
    assert await levels(stock, b) == (3, 1, 2)
    assert (await settled_audit(server)).ok


async def test_raising_lowering_and_ending_move_every_part(server: Running, stock: Any) -> None:
    api = server.api
    a, b = await two_items(server, 20, 20)
    campaign = await api.campaigns.CreateCampaign(bundle_request([(a, 2), (b, 3)], units=2))
    mask = field_mask_pb2.FieldMask(paths=["units_allotted"])

    async def allot(units: int) -> C.Campaign:
        return await api.campaigns.UpdateCampaign(
            C.UpdateCampaignRequest(
                campaign=C.Campaign(id=campaign.id, units_allotted=units), update_mask=mask
            )
        )

    assert (await allot(5)).units_allotted == 5
    assert await levels(stock, a) == (20, 10, 10)
    assert await levels(stock, b) == (20, 15, 5)
    # One item short (B has 5 left: one more bundle of 3, not two): nothing moves.
    with pytest.raises(grpc.aio.AioRpcError) as short:
        await allot(7)
    assert failure(short.value).metadata["item_id"] == b
    assert await levels(stock, a) == (20, 10, 10)
    assert (await allot(3)).units_allotted == 3
    assert await levels(stock, a) == (20, 6, 14)
    assert await levels(stock, b) == (20, 9, 11)

    member = await api.member(points=1000)
    await api.redeem(member.id, campaign.id)
    ended = await api.campaigns.EndCampaign(C.EndCampaignRequest(campaign_id=campaign.id))

    assert (ended.units_allotted, ended.units_committed) == (1, 1)
    assert await levels(stock, a) == (18, 0, 18)
    assert await levels(stock, b) == (17, 0, 17)
    assert (await settled_audit(server)).ok


@pytest.mark.parametrize(
    ("shape", "field"),
    [
        ("duplicate", "bundle_parts[1].item_id"),
        ("zero quantity", "bundle_parts[1].quantity"),
        ("one part", "bundle_parts"),
        ("other lead", "item_id"),
        ("mixed kinds", "bundle_parts[1].item_id"),
        ("pool item", "bundle_parts[1].item_id"),
        ("two shards", "stock_shards"),
    ],
)
async def test_a_malformed_bundle_is_refused_naming_the_field(
    server: Running, stock: Any, shape: str, field: str
) -> None:
    api = server.api
    a, b = await two_items(server, 10, 10)
    physical = (await api.item(kind=PHYSICAL, stock=10)).id
    pool = (
        await api.catalog.CreateItem(
            catalog_pb2.CreateItemRequest(
                sku="pool-" + uuid.uuid4().hex[:8],
                name="Voucher",
                kind=common_pb2.ITEM_KIND_VIRTUAL,
                initial_stock=0,
                code_source=catalog_pb2.CODE_SOURCE_POOL,
            )
        )
    ).id
    requests = {
        "duplicate": bundle_request([(a, 1), (a, 2)], units=1),
        "zero quantity": bundle_request([(a, 1), (b, 0)], units=1),
        "one part": bundle_request([(a, 1)], units=1),
        "other lead": bundle_request([(a, 1), (b, 1)], units=1, item_id=b),
        "mixed kinds": bundle_request([(a, 1), (physical, 1)], units=1),
        "pool item": bundle_request([(a, 1), (pool, 1)], units=1),
        "two shards": bundle_request([(a, 1), (b, 1)], units=1, stock_shards=2),
    }

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.campaigns.CreateCampaign(requests[shape])

    got = failure(refused.value)
    assert (got.code, got.field) == (grpc.StatusCode.INVALID_ARGUMENT, field)
    assert await levels(stock, a) == (10, 0, 10)
    assert await levels(stock, b) == (10, 0, 10)
    assert list((await api.campaigns.ListCampaigns(C.ListCampaignsRequest())).campaigns) == []


async def test_an_unknown_part_is_not_found(server: Running, stock: Any) -> None:
    api = server.api
    a = (await api.item(kind=SERVICE, stock=10)).id
    missing = str(uuid.uuid4())

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.campaigns.CreateCampaign(bundle_request([(a, 1), (missing, 1)], units=1))

    assert failure(refused.value).code == grpc.StatusCode.NOT_FOUND
    assert missing in failure(refused.value).message
    assert await levels(stock, a) == (10, 0, 10)


async def test_a_part_of_a_live_bundle_cannot_be_retired(server: Running) -> None:
    api = server.api
    a, b = await two_items(server, 10, 10)
    campaign = await api.campaigns.CreateCampaign(bundle_request([(a, 1), (b, 1)], units=2))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.catalog.RetireItem(catalog_pb2.RetireItemRequest(item_id=b))

    got = failure(refused.value)
    assert (got.code, got.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ITEM_HAS_LIVE_CAMPAIGN")
    assert got.metadata["campaign_id"] == campaign.id
    # A retired item cannot join a new bundle.
    await api.campaigns.EndCampaign(C.EndCampaignRequest(campaign_id=campaign.id))
    await api.catalog.RetireItem(catalog_pb2.RetireItemRequest(item_id=b))
    with pytest.raises(grpc.aio.AioRpcError) as retired:
        await api.campaigns.CreateCampaign(bundle_request([(a, 1), (b, 1)], units=1))
    assert failure(retired.value).reason == "ITEM_RETIRED"


async def test_a_paid_bundle_takes_every_part_when_its_payment_is_confirmed(
    server: Running, stock: Any
) -> None:
    api = server.api
    a, b = await two_items(server, 10, 10)
    campaign = await api.campaigns.CreateCampaign(
        bundle_request([(a, 2), (b, 3)], units=3, cash_price_cents=500)
    )
    member = await api.member(points=1000)
    pending = (await api.redeem(member.id, campaign.id, quantity=2)).redemption
    assert pending.status == redemption_pb2.REDEMPTION_STATUS_PENDING_PAYMENT
    assert pending.cash_total_cents == 1000  # the price is per bundle
    # Held inside the allotment, per part, until the payment: nothing has left yet.
    held = await stock.GetStockLevels(stock_pb2.GetStockLevelsRequest(item_id=b))
    assert (held.on_hand, held.allotted, held.held) == (10, 9, 6)

    confirmed = await api.redemptions.ConfirmPayment(
        redemption_pb2.ConfirmPaymentRequest(
            redemption_id=pending.id,
            member_id=member.id,
            payment_reference="pay-bundle",
            amount_cents=1000,
            currency="CNY",
        )
    )

    assert confirmed.status == redemption_pb2.REDEMPTION_STATUS_COMMITTED
    assert await levels(stock, a) == (6, 2, 4)
    assert await levels(stock, b) == (4, 3, 1)
    assert (await settled_audit(server)).ok


async def test_a_bundle_and_a_campaign_of_one_of_its_items_sell_side_by_side(
    server: Running, stock: Any
) -> None:
    """The group commit, cancels and an end on campaigns sharing an item at once: each
    sells exactly its allotment, nothing deadlocks, and the ledger adds up."""
    api = server.api
    a, b = await two_items(server, 12, 12)
    bundle = await api.campaigns.CreateCampaign(bundle_request([(b, 2), (a, 1)], units=4))
    single = await api.campaign(units=4, item_id=b, kind=SERVICE)
    members = [await api.member(points=1000) for _ in range(12)]

    ok, refused = await outcomes(api.redeem(m.id, c.id) for m in members for c in (bundle, single))

    assert len(ok) == 8 and refused == {"SOLD_OUT": 16}
    # b: 8 to the bundle, 4 to the single campaign, all sold; a: 4 sold of 12.
    assert await levels(stock, b) == (0, 0, 0)
    assert await levels(stock, a) == (8, 0, 8)
    bundled = [r.redemption for r in ok if r.redemption.campaign_id == bundle.id]
    await outcomes(
        api.redemptions.CancelRedemption(
            redemption_pb2.CancelRedemptionRequest(
                redemption_id=r.id, member_id=r.member_id, reason="changed my mind"
            )
        )
        for r in bundled[:2]
    )
    await api.campaigns.EndCampaign(C.EndCampaignRequest(campaign_id=bundle.id))
    assert await levels(stock, b) == (4, 0, 4)
    assert await levels(stock, a) == (10, 0, 10)
    assert (await settled_audit(server)).ok


async def test_the_audit_checks_each_part_of_a_bundle_redemption(server: Running) -> None:
    a, b = await two_items(server, 10, 10)
    bundle = await server.api.campaigns.CreateCampaign(bundle_request([(a, 2), (b, 2)], units=2))
    member = await server.api.member(points=1000)
    made = (await server.api.redeem(member.id, bundle.id)).redemption
    assert (await settled_audit(server)).ok
    # One part's movement takes a unit too many, the other's one too few: the redemption's
    # total is right, each part's is not.
    with psycopg.connect(server.app.stores.database_url) as conn:
        for item, delta in ((a, -1), (b, 1)):
            conn.execute(
                "UPDATE stock_movements SET on_hand_delta = on_hand_delta + %s, "
                "allotted_delta = allotted_delta + %s WHERE redemption_id = %s AND item_id = %s",
                (delta, delta, made.id, item),
            )

    report = await settled_audit(server)

    found = [v for v in report.violations if "taken from stock differ" in v]
    # One row per wrong part (the check before this one summed the parts: it saw 4 == 4).
    assert len(found) == 2 and all(made.id in v for v in found), report.violations
    assert {a, b} == {item for item in (a, b) if any(item in v for v in found)}
