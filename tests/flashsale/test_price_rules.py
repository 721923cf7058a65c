"""Price rules: the price in force at admission is paid, stored and replayed; tier rules beat
all-tier ones; bad rules are refused naming the field; QuotePrice holds nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from loyalty.v1 import campaign_pb2, catalog_pb2, member_pb2, redemption_pb2
from tests.conftest import Running
from tests.factories import Api, failure, key, ts
from tests.flashsale.helpers import settled_audit


def rule(
    name: str,
    starts: datetime,
    ends: datetime,
    *,
    percent: int | None = None,
    points_price: int | None = None,
    tier: str = "",
) -> campaign_pb2.PriceRule:
    value = campaign_pb2.PriceRule(name=name, starts_at=ts(starts), ends_at=ts(ends), tier=tier)
    if percent is not None:
        value.percent = percent
    if points_price is not None:
        value.points_price = points_price
    return value


async def priced_campaign(
    api: Api, rules: list[campaign_pb2.PriceRule], *, starts: datetime, item_id: str = ""
) -> campaign_pb2.Campaign:
    item_id = item_id or (await api.item(stock=50)).id
    return await api.campaigns.CreateCampaign(
        campaign_pb2.CreateCampaignRequest(
            item_id=item_id,
            name="Year-end sale",
            units_allotted=50,
            points_price=100,
            per_member_limit=10,
            starts_at=ts(starts),
            ends_at=ts(starts + timedelta(hours=2)),
            price_rules=rules,
        )
    )


async def test_the_rule_in_force_sets_the_price_and_is_stored(server: Running) -> None:
    api = server.api
    now = datetime.now(UTC)
    starts = now - timedelta(minutes=1)
    campaign = await priced_campaign(
        api,
        [
            rule("20% off", starts, now + timedelta(minutes=30), percent=80),
            rule("later", now + timedelta(minutes=30), now + timedelta(hours=1), points_price=7),
        ],
        starts=starts,
    )
    member = await api.member(points=1000)

    made = (await api.redeem(member.id, campaign.id, quantity=2)).redemption
    read = await api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(redemption_id=made.id, member_id=member.id)
    )

    applied = campaign.price_rules[0]
    assert applied.id and applied.name == "20% off" and applied.percent == 80
    assert campaign.price_rules[1].points_price == 7
    for r in (made, read):
        assert (r.points_total, r.list_points_total, r.price_rule_id) == (160, 200, applied.id)
    assert (await api.balance(member.id)).balance == 840
    offer = await api.redemptions.GetOffer(redemption_pb2.GetOfferRequest(campaign_id=campaign.id))
    assert (offer.points_price, offer.points_price_now) == (100, 80)
    assert [r.id for r in offer.price_rules] == [r.id for r in campaign.price_rules]
    assert (await settled_audit(server)).ok


async def test_outside_every_rule_the_list_price_is_paid(server: Running) -> None:
    api = server.api
    now = datetime.now(UTC)
    campaign = await priced_campaign(
        api,
        [rule("later", now + timedelta(minutes=30), now + timedelta(hours=1), percent=50)],
        starts=now - timedelta(minutes=1),
    )
    member = await api.member(points=1000)

    made = (await api.redeem(member.id, campaign.id)).redemption

    assert (made.points_total, made.list_points_total, made.price_rule_id) == (100, 100, "")


async def test_a_replay_after_the_rule_ended_returns_the_price_paid(server: Running) -> None:
    api = server.api
    now = datetime.now(UTC)
    ends = now + timedelta(seconds=3)
    campaign = await priced_campaign(
        api,
        [rule("flash", now - timedelta(minutes=1), ends, points_price=30)],
        starts=now - timedelta(minutes=1),
    )
    member = await api.member(points=1000)
    idem = key()

    first = await api.redeem(member.id, campaign.id, idem=idem)
    await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 0.2)
    replay = await api.redeem(member.id, campaign.id, idem=idem)
    after = await api.redeem(member.id, campaign.id)

    assert first.redemption.points_total == 30 and not first.replayed
    assert replay.replayed and replay.redemption.id == first.redemption.id
    assert (replay.redemption.points_total, replay.redemption.price_rule_id) == (
        30,
        campaign.price_rules[0].id,
    )
    assert (after.redemption.points_total, after.redemption.price_rule_id) == (100, "")
    assert (await api.balance(member.id)).balance == 1000 - 30 - 100


async def test_a_tier_rule_beats_the_rule_for_everybody(server: Running) -> None:
    api = server.api
    now = datetime.now(UTC)
    starts = now - timedelta(minutes=1)
    until = now + timedelta(hours=1)
    campaign = await priced_campaign(
        api,
        [
            rule("sale", starts, until, percent=90),
            rule("gold day", starts, until, points_price=50, tier="gold"),
        ],
        starts=starts,
    )
    base, gold = await api.member(points=1000), await api.member(points=1000)
    await api.members.SetManualTier(
        member_pb2.SetManualTierRequest(
            member_id=gold.id, tier="gold", reason="vip", operator_id="op"
        )
    )

    paid_base = (await api.redeem(base.id, campaign.id)).redemption
    paid_gold = (await api.redeem(gold.id, campaign.id)).redemption

    assert (paid_base.points_total, paid_base.price_rule_id) == (90, campaign.price_rules[0].id)
    assert (paid_gold.points_total, paid_gold.price_rule_id) == (50, campaign.price_rules[1].id)


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("overlap", "price_rules[1].starts_at"),
        ("outside", "price_rules[0].starts_at"),
        ("tier", "price_rules[0].tier"),
        ("percent", "price_rules[0].percent"),
        ("no_price", "price_rules[0].price"),
        ("reversed", "price_rules[0].ends_at"),
        ("free", "price_rules[0].points_price"),
    ],
)
async def test_a_bad_rule_is_refused_naming_it_and_changes_nothing(
    server: Running, case: str, field: str
) -> None:
    api = server.api
    now = datetime.now(UTC)
    starts, mid, end = now, now + timedelta(minutes=30), now + timedelta(hours=1)
    rules = {
        "overlap": [rule("a", starts, mid, percent=80), rule("b", starts, end, percent=70)],
        "outside": [rule("a", starts - timedelta(hours=1), mid, percent=80)],
        "tier": [rule("a", starts, mid, percent=80, tier="diamond")],
        "percent": [rule("a", starts, mid, percent=0)],
        "no_price": [rule("a", starts, mid)],
        "reversed": [rule("a", mid, starts, percent=80)],
        "free": [rule("a", starts, mid, points_price=0)],
    }[case]
    item = await api.item(stock=50)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await priced_campaign(api, rules, starts=starts, item_id=item.id)

    got = failure(refused.value)
    assert (got.code, got.field) == (grpc.StatusCode.INVALID_ARGUMENT, field)
    after = await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item.id))
    listed = await api.campaigns.ListCampaigns(campaign_pb2.ListCampaignsRequest())
    assert after.stock_on_hand == 50 and not listed.campaigns


async def test_quote_price_tells_the_price_and_holds_nothing(server: Running) -> None:
    api = server.api
    now = datetime.now(UTC)
    ends = now + timedelta(minutes=20)
    campaign = await priced_campaign(
        api,
        [rule("sale", now - timedelta(minutes=1), ends, percent=75)],
        starts=now - timedelta(minutes=1),
    )
    member = await api.member(points=1000)

    quote = await api.redemptions.QuotePrice(
        redemption_pb2.QuotePriceRequest(member_id=member.id, campaign_id=campaign.id, quantity=3)
    )

    assert (quote.list_points_total, quote.points_total, quote.cash_total_cents) == (300, 225, 0)
    assert quote.price_rule.id == campaign.price_rules[0].id
    assert abs(quote.price_valid_until.ToDatetime(tzinfo=UTC) - ends) < timedelta(seconds=1)
    fetched = await api.get_campaign(campaign.id)
    balance = await api.balance(member.id)
    assert (fetched.units_held, fetched.units_committed, balance.held) == (0, 0, 0)
    made = (await api.redeem(member.id, campaign.id, quantity=3)).redemption
    assert made.points_total == quote.points_total


async def test_quote_price_refuses_what_redeem_would(server: Running) -> None:
    api = server.api
    member = await api.member(points=1000)
    later = await api.campaign(starts_in=timedelta(hours=1))
    open_now = await api.campaign()

    async def reason(member_id: str, campaign_id: str, quantity: int = 1) -> tuple[str, str]:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.redemptions.QuotePrice(
                redemption_pb2.QuotePriceRequest(
                    member_id=member_id, campaign_id=campaign_id, quantity=quantity
                )
            )
        got = failure(refused.value)
        return got.code.name, got.field or got.reason

    assert await reason(member.id, later.id) == ("FAILED_PRECONDITION", "CAMPAIGN_NOT_ACTIVE")
    assert await reason(member.id, open_now.id, 0) == ("INVALID_ARGUMENT", "quantity")
    unknown = "00000000-0000-4000-8000-000000000000"
    assert (await reason(unknown, open_now.id))[0] == "NOT_FOUND"


async def test_update_campaign_replaces_the_rules(server: Running) -> None:
    api = server.api
    now = datetime.now(UTC)
    starts = now - timedelta(minutes=1)
    campaign = await priced_campaign(api, [], starts=starts)
    member = await api.member(points=1000)
    before = (await api.redeem(member.id, campaign.id)).redemption

    def update(*rules: campaign_pb2.PriceRule) -> campaign_pb2.UpdateCampaignRequest:
        request = campaign_pb2.UpdateCampaignRequest(
            campaign=campaign_pb2.Campaign(id=campaign.id, price_rules=list(rules))
        )
        request.update_mask.paths.append("price_rules")
        return request

    updated = await api.campaigns.UpdateCampaign(
        update(rule("half", starts, now + timedelta(minutes=30), percent=50))
    )
    during = (await api.redeem(member.id, campaign.id)).redemption
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.campaigns.UpdateCampaign(
            update(rule("late", starts, now + timedelta(days=1), percent=50))
        )
    cleared = await api.campaigns.UpdateCampaign(update())
    after = (await api.redeem(member.id, campaign.id)).redemption

    assert [r.name for r in updated.price_rules] == ["half"]
    assert [before.points_total, during.points_total, after.points_total] == [100, 50, 100]
    assert during.price_rule_id == updated.price_rules[0].id
    assert failure(refused.value).field == "price_rules[0].starts_at"
    assert not cleared.price_rules
    # The redemption still names the rule that priced it, though the rule was replaced.
    read = await api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(redemption_id=during.id, member_id=member.id)
    )
    assert (read.points_total, read.price_rule_id) == (50, updated.price_rules[0].id)
