"""Bad input: INVALID_ARGUMENT naming the field (google.rpc.BadRequest), nothing changes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from loyalty.v1 import (
    campaign_pb2,
    catalog_pb2,
    common_pb2,
    member_pb2,
    redemption_pb2,
)
from tests.conftest import Running
from tests.factories import ADDRESS, Api, failure, ts

ADDRESS_FIELDS = dict(
    recipient="Li Wei",
    line1="1 Nanjing Road",
    city="Shanghai",
    postal_code="200001",
    country_code="CN",
)


def address(**changes: str) -> common_pb2.ShippingAddress:
    return common_pb2.ShippingAddress(**{**ADDRESS_FIELDS, **changes})


REDEEM_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("negative quantity", {"quantity": -1}, "quantity"),
    ("zero quantity", {"quantity": 0}, "quantity"),
    ("huge quantity", {"quantity": 1001}, "quantity"),
    ("empty key", {"idempotency_key": ""}, "idempotency_key"),
    ("long key", {"idempotency_key": "k" * 129}, "idempotency_key"),
    ("key with a newline", {"idempotency_key": "a\nb"}, "idempotency_key"),
    ("key with non-ASCII", {"idempotency_key": "clé"}, "idempotency_key"),
    ("empty member id", {"member_id": ""}, "member_id"),
    ("malformed member id", {"member_id": "member-1"}, "member_id"),
    ("malformed campaign id", {"campaign_id": "42"}, "campaign_id"),
    ("no address for a physical item", {"shipping_address": None}, "shipping_address"),
    ("address without city", {"shipping_address": address(city="")}, "shipping_address.city"),
    (
        "oversized recipient",
        {"shipping_address": address(recipient="x" * 201)},
        "shipping_address.recipient",
    ),
    (
        "bad country",
        {"shipping_address": address(country_code="CHN")},
        "shipping_address.country_code",
    ),
    (
        "control chars in line1",
        {"shipping_address": address(line1="a\x00b")},
        "shipping_address.line1",
    ),
]


@pytest.mark.parametrize(
    ("case", "changes", "field"), REDEEM_CASES, ids=[c[0] for c in REDEEM_CASES]
)
async def test_malformed_redeem_is_invalid_argument_and_changes_nothing(
    server: Running, case: str, changes: dict[str, Any], field: str
) -> None:
    api = server.api
    campaign = await api.campaign(units=5, kind=common_pb2.ITEM_KIND_PHYSICAL)
    member = await api.member(points=1000)
    fields: dict[str, Any] = dict(
        member_id=member.id,
        campaign_id=campaign.id,
        quantity=1,
        idempotency_key="k-1",
        shipping_address=ADDRESS,
    )
    fields.update(changes)
    if fields["shipping_address"] is None:
        del fields["shipping_address"]

    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await api.redemptions.Redeem(redemption_pb2.RedeemRequest(**fields))

    f = failure(bad.value)
    assert (f.code, f.field, f.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        field,
        "INVALID_ARGUMENT",
    )
    assert field.split(".")[-1] in f.message
    after = await api.get_campaign(campaign.id)
    assert (after.units_remaining, after.units_held) == (5, 0)
    assert (await api.balance(member.id)).balance == 1000


CONFIRM_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("no member id", {"member_id": ""}, "member_id"),
    ("no payment reference", {"payment_reference": ""}, "payment_reference"),
    ("long payment reference", {"payment_reference": "p" * 129}, "payment_reference"),
    ("no amount", {"amount_cents": 0}, "amount_cents"),
    ("negative amount", {"amount_cents": -500}, "amount_cents"),
    ("no currency", {"currency": ""}, "currency"),
    ("lower-case currency", {"currency": "cny"}, "currency"),
    ("two-letter currency", {"currency": "CN"}, "currency"),
    ("four-letter currency", {"currency": "CNYY"}, "currency"),
    ("currency sign", {"currency": "¥"}, "currency"),
    ("currency with a newline", {"currency": "CNY\n"}, "currency"),
]


async def test_malformed_payment_is_invalid_argument_and_changes_nothing(api: Api) -> None:
    """Each request is the right payment but for one field: it would commit if let through."""
    campaign = await api.campaign(units=5, points_price=100, cash_price_cents=500)
    member = await api.member(points=1000)
    pending = (await api.redeem(member.id, campaign.id)).redemption
    right = dict(
        redemption_id=pending.id,
        member_id=member.id,
        payment_reference="pay-1",
        amount_cents=500,
        currency="CNY",
    )

    for case, changes, field in CONFIRM_CASES:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await api.redemptions.ConfirmPayment(
                redemption_pb2.ConfirmPaymentRequest(**{**right, **changes})
            )
        f = failure(bad.value)
        assert (f.code, f.field, f.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            field,
            "INVALID_ARGUMENT",
        ), case
        assert field in f.message, case

    still = await api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(redemption_id=pending.id, member_id=member.id)
    )
    assert still.status == redemption_pb2.REDEMPTION_STATUS_PENDING_PAYMENT
    assert (await api.get_campaign(campaign.id)).units_held == 1
    assert (await api.balance(member.id)).held == 100


async def test_an_address_is_not_needed_for_a_virtual_item(api: Api) -> None:
    campaign = await api.campaign(units=5, kind=common_pb2.ITEM_KIND_VIRTUAL)
    member = await api.member(points=1000)
    assert (await api.redeem(member.id, campaign.id)).redemption.quantity == 1


async def expect_invalid(call: Any, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await call
    f = failure(bad.value)
    assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, field), f


async def test_create_item_validation(api: Api) -> None:
    def req(**kw: Any) -> catalog_pb2.CreateItemRequest:
        base = dict(sku="SKU-1", name="Mug", kind=common_pb2.ITEM_KIND_PHYSICAL, initial_stock=5)
        return catalog_pb2.CreateItemRequest(**{**base, **kw})

    await expect_invalid(api.catalog.CreateItem(req(sku="")), "sku")
    await expect_invalid(api.catalog.CreateItem(req(sku="has space")), "sku")
    await expect_invalid(api.catalog.CreateItem(req(sku="s" * 65)), "sku")
    await expect_invalid(api.catalog.CreateItem(req(name=" ")), "name")
    await expect_invalid(api.catalog.CreateItem(req(name="n" * 201)), "name")
    await expect_invalid(api.catalog.CreateItem(req(kind=common_pb2.ITEM_KIND_UNSPECIFIED)), "kind")
    await expect_invalid(api.catalog.CreateItem(req(initial_stock=-1)), "initial_stock")
    await expect_invalid(api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id="x")), "item_id")


async def test_create_campaign_validation(api: Api) -> None:
    item = await api.item(stock=10)
    now = datetime.now(UTC)

    def req(**kw: Any) -> campaign_pb2.CreateCampaignRequest:
        base: dict[str, Any] = dict(
            item_id=item.id,
            name="Sale",
            units_allotted=5,
            points_price=100,
            cash_price_cents=0,
            per_member_limit=1,
            starts_at=ts(now),
            ends_at=ts(now + timedelta(hours=1)),
        )
        base.update(kw)
        return campaign_pb2.CreateCampaignRequest(
            **{k: v for k, v in base.items() if v is not None}
        )

    create = api.campaigns.CreateCampaign
    await expect_invalid(create(req(item_id="nope")), "item_id")
    await expect_invalid(create(req(name="")), "name")
    await expect_invalid(create(req(units_allotted=0)), "units_allotted")
    await expect_invalid(create(req(points_price=-1)), "points_price")
    await expect_invalid(create(req(cash_price_cents=-5)), "cash_price_cents")
    await expect_invalid(create(req(points_price=0, cash_price_cents=0)), "points_price")
    await expect_invalid(create(req(per_member_limit=0)), "per_member_limit")
    await expect_invalid(create(req(starts_at=None)), "starts_at")
    await expect_invalid(create(req(ends_at=ts(now - timedelta(hours=1)))), "ends_at")
    # A window that is already over takes no stock: the sale could never open.
    ended = req(starts_at=ts(now - timedelta(days=2)), ends_at=ts(now - timedelta(days=1)))
    await expect_invalid(create(ended), "ends_at")
    assert (
        await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item.id))
    ).stock_on_hand == 10


async def test_member_and_earn_validation(api: Api) -> None:
    member = await api.member()

    def earn(**kw: Any) -> member_pb2.EarnPointsRequest:
        base = dict(member_id=member.id, points=10, reason="signup", idempotency_key="e-1")
        return member_pb2.EarnPointsRequest(**{**base, **kw})

    await expect_invalid(api.members.CreateMember(member_pb2.CreateMemberRequest()), "display_name")
    await expect_invalid(
        api.members.CreateMember(
            member_pb2.CreateMemberRequest(display_name="a", external_ref="r" * 129)
        ),
        "external_ref",
    )
    await expect_invalid(api.members.EarnPoints(earn(points=0)), "points")
    await expect_invalid(api.members.EarnPoints(earn(points=-5)), "points")
    await expect_invalid(api.members.EarnPoints(earn(reason="")), "reason")
    await expect_invalid(api.members.EarnPoints(earn(reason="r" * 501)), "reason")
    await expect_invalid(api.members.EarnPoints(earn(idempotency_key="")), "idempotency_key")
    await expect_invalid(api.members.EarnPoints(earn(member_id="bad")), "member_id")
    assert (await api.balance(member.id)).balance == 0


async def test_list_validation(api: Api) -> None:
    member = await api.member()

    def listing(**kw: Any) -> redemption_pb2.ListRedemptionsRequest:
        return redemption_pb2.ListRedemptionsRequest(**{"member_id": member.id, **kw})

    await expect_invalid(api.redemptions.ListRedemptions(listing(page_size=-1)), "page_size")
    await expect_invalid(api.redemptions.ListRedemptions(listing(page_size=101)), "page_size")
    await expect_invalid(
        api.redemptions.ListRedemptions(listing(page_token="garbage!")), "page_token"
    )
    await expect_invalid(
        api.campaigns.ListCampaigns(campaign_pb2.ListCampaignsRequest(page_token="zz")),
        "page_token",
    )
    await expect_invalid(
        api.redemptions.CancelRedemption(
            redemption_pb2.CancelRedemptionRequest(redemption_id=str(uuid.uuid4()), member_id="")
        ),
        "member_id",
    )
    await expect_invalid(
        api.redemptions.ConfirmPayment(
            redemption_pb2.ConfirmPaymentRequest(
                redemption_id=str(uuid.uuid4()),
                member_id=str(uuid.uuid4()),
                payment_reference="",
                amount_cents=500,
                currency="CNY",
            )
        ),
        "payment_reference",
    )
    # Calls that name a redemption name its member too.
    await expect_invalid(
        api.redemptions.ConfirmPayment(
            redemption_pb2.ConfirmPaymentRequest(
                redemption_id=str(uuid.uuid4()),
                payment_reference="pay-1",
                amount_cents=500,
                currency="CNY",
            )
        ),
        "member_id",
    )
    await expect_invalid(
        api.redemptions.GetRedemption(
            redemption_pb2.GetRedemptionRequest(redemption_id=str(uuid.uuid4()))
        ),
        "member_id",
    )
