"""The storefront's reads through RedemptionService: ListOffers, GetOffer and the member's
points statement (ListLedgerEntries), through a real channel."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import grpc
import pytest

from loyalty.v1 import campaign_pb2, common_pb2, member_pb2, redemption_pb2
from server import scopes
from tests import auth
from tests.conftest import Running
from tests.factories import Api, failure

ON_SALE = redemption_pb2.OFFER_WINDOW_ON_SALE
UPCOMING = redemption_pb2.OFFER_WINDOW_UPCOMING


async def offers(api: Api, **request: object) -> list[redemption_pb2.Offer]:
    """Every page of ListOffers."""
    found: list[redemption_pb2.Offer] = []
    token = ""
    while True:
        page = await api.redemptions.ListOffers(
            redemption_pb2.ListOffersRequest(page_token=token, **request)  # type: ignore[arg-type]
        )
        found += page.offers
        token = page.next_page_token
        if not token:
            return found


async def test_on_sale_and_upcoming_are_listed_apart_and_ended_never(api: Api) -> None:
    on_sale = await api.campaign(units=3)
    soon = await api.campaign(starts_in=timedelta(hours=1))
    later = await api.campaign(starts_in=timedelta(hours=2))
    over = await api.campaign()
    await api.campaigns.EndCampaign(campaign_pb2.EndCampaignRequest(campaign_id=over.id))

    both = await offers(api)
    assert [o.campaign_id for o in both] == [on_sale.id, soon.id, later.id]  # soonest first
    assert [o.window for o in both] == [ON_SALE, UPCOMING, UPCOMING]
    assert [o.campaign_id for o in await offers(api, window=ON_SALE)] == [on_sale.id]
    assert [o.campaign_id for o in await offers(api, window=UPCOMING)] == [soon.id, later.id]

    ended = await api.redemptions.GetOffer(redemption_pb2.GetOfferRequest(campaign_id=over.id))
    assert ended.window == redemption_pb2.OFFER_WINDOW_ENDED


async def test_an_offer_carries_what_a_storefront_shows(api: Api) -> None:
    item = await api.item(kind=common_pb2.ITEM_KIND_PHYSICAL, stock=50)
    c = await api.campaign(
        units=7, points_price=250, cash_price_cents=990, limit=2, item_id=item.id
    )
    o = await api.redemptions.GetOffer(redemption_pb2.GetOfferRequest(campaign_id=c.id))
    assert (o.campaign_id, o.name, o.window) == (c.id, c.name, ON_SALE)
    assert (o.starts_at, o.ends_at) == (c.starts_at, c.ends_at)
    assert (o.points_price, o.cash_price_cents, o.per_member_limit) == (250, 990, 2)
    assert o.approximate_units_remaining == 7
    assert (o.item_id, o.item_sku, o.item_name, o.item_kind) == (
        item.id,
        item.sku,
        item.name,
        common_pb2.ITEM_KIND_PHYSICAL,
    )


async def test_the_kind_filter_and_paging(api: Api) -> None:
    virtual = [await api.campaign(starts_in=timedelta(minutes=-50 + i)) for i in range(5)]
    physical = await api.campaign(kind=common_pb2.ITEM_KIND_PHYSICAL)

    listed = await offers(api, item_kind=common_pb2.ITEM_KIND_VIRTUAL, page_size=2)
    assert [o.campaign_id for o in listed] == [c.id for c in virtual]
    first = await api.redemptions.ListOffers(redemption_pb2.ListOffersRequest(page_size=2))
    assert len(first.offers) == 2 and first.next_page_token
    only = await offers(api, item_kind=common_pb2.ITEM_KIND_PHYSICAL)
    assert [o.campaign_id for o in only] == [physical.id]
    assert len(await offers(api, page_size=1)) == 6


async def test_remaining_units_drop_after_redemptions_in_redis_and_postgresql(
    server: Running,
) -> None:
    api = server.api
    c = await api.campaign(units=5, limit=5)
    member = await api.member(points=10_000)
    await api.redeem(member.id, c.id, quantity=2)
    get = redemption_pb2.GetOfferRequest(campaign_id=c.id)
    assert (await api.redemptions.GetOffer(get)).approximate_units_remaining == 3
    # Not loaded in Redis: PostgreSQL's count.
    await server.app.redis.flushall()
    assert (await api.redemptions.GetOffer(get)).approximate_units_remaining == 3
    await api.redeem(member.id, c.id, quantity=3)
    assert (await api.redemptions.GetOffer(get)).approximate_units_remaining == 0
    listed = await offers(api, window=ON_SALE)
    assert [o.approximate_units_remaining for o in listed] == [0]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"window": redemption_pb2.OFFER_WINDOW_ENDED}, "window"),
        ({"window": 42}, "window"),
        ({"item_kind": 42}, "item_kind"),
        ({"page_size": 101}, "page_size"),
        ({"page_token": "nonsense"}, "page_token"),
    ],
)
async def test_bad_listing_requests_name_the_field(
    api: Api, request_: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await api.redemptions.ListOffers(redemption_pb2.ListOffersRequest(**request_))  # type: ignore[arg-type]
    assert (failure(e.value).code, failure(e.value).field) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        field,
    )


async def test_get_offer_of_no_campaign_is_not_found(api: Api) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await api.redemptions.GetOffer(
            redemption_pb2.GetOfferRequest(campaign_id="00000000-0000-4000-8000-000000000000")
        )
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_statement_through_the_gateway_service_is_the_named_members_only(
    api: Api,
) -> None:
    ann = await api.member(points=1000)
    bob = await api.member(points=70)
    c = await api.campaign(points_price=100)
    await api.redeem(ann.id, c.id)

    def ledger(
        member_id: str, **extra: object
    ) -> redemption_pb2.RedemptionServiceListLedgerEntriesRequest:
        return redemption_pb2.RedemptionServiceListLedgerEntriesRequest(
            member_id=member_id,
            **extra,  # type: ignore[arg-type]
        )

    anns = await api.redemptions.ListLedgerEntries(ledger(ann.id))
    assert [(e.kind, e.amount) for e in anns.entries] == [
        (member_pb2.LEDGER_ENTRY_KIND_REDEEM, -100),
        (member_pb2.LEDGER_ENTRY_KIND_EARN, 1000),
    ]
    # The same as MemberService's (the same domain code).
    direct = await api.members.ListLedgerEntries(
        member_pb2.ListLedgerEntriesRequest(member_id=ann.id)
    )
    assert list(anns.entries) == list(direct.entries)
    # Another member's id gives that member's entries, nothing of Ann's.
    bobs = await api.redemptions.ListLedgerEntries(ledger(bob.id))
    assert {e.member_id for e in bobs.entries} == {bob.id}
    assert [e.amount for e in bobs.entries] == [70]
    only_redeem = await api.redemptions.ListLedgerEntries(
        ledger(ann.id, kinds=[member_pb2.LEDGER_ENTRY_KIND_REDEEM])
    )
    assert [e.amount for e in only_redeem.entries] == [-100]

    with pytest.raises(grpc.aio.AioRpcError) as e:
        await api.redemptions.ListLedgerEntries(ledger(""))
    assert (failure(e.value).code, failure(e.value).field) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "member_id",
    )
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await api.redemptions.ListLedgerEntries(ledger("00000000-0000-4000-8000-000000000000"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_new_methods_refuse_credentials_without_their_scopes(server: Running) -> None:
    api = server.api
    c = await api.campaign()
    member = await api.member(points=10)
    channel = auth.channel(f"127.0.0.1:{server.app.port}", auth.token([scopes.PAYMENTS]))
    try:
        payments = Api(channel)
        calls: list[Awaitable[Any]] = [
            payments.redemptions.ListOffers(redemption_pb2.ListOffersRequest()),
            payments.redemptions.GetOffer(redemption_pb2.GetOfferRequest(campaign_id=c.id)),
            payments.redemptions.ListLedgerEntries(
                redemption_pb2.RedemptionServiceListLedgerEntriesRequest(member_id=member.id)
            ),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call
            assert (failure(e.value).code, failure(e.value).reason) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "SCOPE_MISSING",
            )
    finally:
        await channel.close()
    # A storefront and reports read them.
    for scope in (scopes.STOREFRONT, scopes.REPORTS):
        channel = auth.channel(f"127.0.0.1:{server.app.port}", auth.token([scope]))
        try:
            reader = Api(channel)
            assert (await reader.redemptions.ListOffers(redemption_pb2.ListOffersRequest())).offers
            await reader.redemptions.ListLedgerEntries(
                redemption_pb2.RedemptionServiceListLedgerEntriesRequest(member_id=member.id)
            )
        finally:
            await channel.close()
