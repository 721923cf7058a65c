"""A card's life through the API: open, lost (refused at once), unlock, replace (the new
card names the same member, the old never works again, the points stay), check, scopes."""

from __future__ import annotations

import grpc
import pytest

from cards import numbers
from loyalty.v1 import cards_pb2, member_pb2
from server import scopes
from tests import auth
from tests.cards.helpers import card_type, check, issue, opened, pg_rows, resolve, stub
from tests.conftest import Running
from tests.factories import failure


async def _refused(call: object) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call  # type: ignore[misc]
    f = failure(e.value)
    return f.code, f.reason, f.field


async def test_open_then_lost_is_refused_at_once_and_unlock_restores_it(server: Running) -> None:
    member_id, number = await opened(server)
    assert (await resolve(server, number)).member_id == member_id
    checked = await check(server, number)
    assert (checked.valid, checked.issued, checked.card.state, checked.card.member_id) == (
        True,
        True,
        cards_pb2.CARD_STATE_ACTIVE,
        member_id,
    )

    lost = await stub(server).ReportCardLost(
        cards_pb2.ReportCardLostRequest(card_number=number, member_id=member_id, reason="wallet")
    )
    assert lost.state == cards_pb2.CARD_STATE_LOST
    # The very next call refuses it: ResolveCard reads PostgreSQL, there is no cache.
    code, reason, _ = await _refused(resolve(server, number))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CARD_LOST")
    assert (await check(server, number)).card.state == cards_pb2.CARD_STATE_LOST

    unlocked = await stub(server).UnlockCard(
        cards_pb2.UnlockCardRequest(card_number=number, reason="found it")
    )
    assert unlocked.state == cards_pb2.CARD_STATE_ACTIVE
    assert (await resolve(server, number)).member_id == member_id
    # Unlocking an active card is out of order and changes nothing.
    code, reason, _ = await _refused(
        stub(server).UnlockCard(cards_pb2.UnlockCardRequest(card_number=number))
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CARD_INVALID_TRANSITION")
    actions = pg_rows(
        server, "SELECT action FROM audit_events WHERE target_id = %s ORDER BY id", number
    )
    assert actions == [("card.open_card",), ("card.report_card_lost",), ("card.unlock_card",)]


async def test_replace_moves_the_member_to_the_new_card_and_points_stay(server: Running) -> None:
    member_id, old = await opened(server)
    await server.api.earn(member_id, 500)
    await stub(server).ReportCardLost(
        cards_pb2.ReportCardLostRequest(card_number=old, member_id=member_id)
    )

    replaced = await stub(server).ReplaceCard(
        cards_pb2.ReplaceCardRequest(
            card_number=old, new_card_number=numbers.number("88", 1), reason="lost on the bus"
        )
    )
    new = replaced.new_card.card_number
    assert new == numbers.number("88", 1)  # the card handed over
    assert replaced.old_card.state == cards_pb2.CARD_STATE_REPLACED
    assert (replaced.new_card.state, replaced.new_card.member_id) == (
        cards_pb2.CARD_STATE_ACTIVE,
        member_id,
    )
    assert (await resolve(server, new)).member_id == member_id
    code, reason, _ = await _refused(resolve(server, old))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CARD_REPLACED")
    # The points are the member's: the till resolves the new card and redeems with them.
    assert (await server.api.balance(member_id)).available == 500
    campaign = await server.api.campaign(points_price=200)
    redeemed = await server.api.redeem((await resolve(server, new)).member_id, campaign.id)
    assert redeemed.redemption.member_id == member_id
    assert (await server.api.balance(member_id)).available == 300
    # A replaced card is final: it cannot be unlocked or replaced again.
    code, reason, _ = await _refused(
        stub(server).UnlockCard(cards_pb2.UnlockCardRequest(card_number=old))
    )
    assert reason == "CARD_INVALID_TRANSITION"
    code, reason, _ = await _refused(
        stub(server).ReplaceCard(
            cards_pb2.ReplaceCardRequest(card_number=old, new_card_number=numbers.number("88", 2))
        )
    )
    assert reason == "CARD_INVALID_TRANSITION"
    assert pg_rows(server, "SELECT replaced_by FROM cards WHERE number = %s", old) == [(new,)]
    audited = pg_rows(
        server,
        "SELECT subject, content->>'new_card_number', content->>'member_id' FROM audit_events "
        "WHERE action = 'card.replace_card' AND target_id = %s",
        old,
    )
    assert audited == [("test-suite", new, member_id)]  # one: the refused retries wrote none


async def test_replace_with_a_named_card_and_refusals_that_change_nothing(
    server: Running,
) -> None:
    member_id, number = await opened(server)
    other = numbers.number("88", 3)
    stranger = await server.api.member()
    # Another member's card: NOT_FOUND, it stays active.
    code, _, _ = await _refused(
        stub(server).ReportCardLost(
            cards_pb2.ReportCardLostRequest(card_number=number, member_id=stranger.id)
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    # Opening an active card, or one with a wrong check digit.
    code, reason, _ = await _refused(
        stub(server).OpenCard(cards_pb2.OpenCardRequest(card_number=number, member_id=stranger.id))
    )
    assert reason == "CARD_INVALID_TRANSITION"
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    code, _, field = await _refused(resolve(server, wrong))
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "card_number")
    code, _, field = await _refused(
        stub(server).OpenCard(cards_pb2.OpenCardRequest(card_number=wrong, member_id=member_id))
    )
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "card_number")
    assert (await check(server, wrong)).valid is False
    never = numbers.number("88", 999)
    assert ((await check(server, never)).valid, (await check(server, never)).issued) == (
        True,
        False,
    )
    code, _, _ = await _refused(resolve(server, never))
    assert code == grpc.StatusCode.NOT_FOUND
    code, reason, _ = await _refused(resolve(server, other))
    assert reason == "CARD_NOT_OPENED"
    assert pg_rows(server, "SELECT number, state FROM cards WHERE member_id IS NOT NULL") == [
        (number, "ACTIVE")
    ]

    replaced = await stub(server).ReplaceCard(
        cards_pb2.ReplaceCardRequest(card_number=number, new_card_number=other)
    )
    assert (replaced.new_card.card_number, replaced.new_card.member_id) == (other, member_id)


async def test_a_default_tier_raises_the_members_floor_and_never_lowers_it(
    server: Running,
) -> None:
    member_id, _ = await opened(server, default_tier="silver")
    status = await server.api.members.EvaluateTier(
        member_pb2.EvaluateTierRequest(member_id=member_id)
    )
    assert (status.manual_tier, status.tier) == ("silver", "silver")
    # A member with a higher floor keeps it.
    gold = await server.api.member()
    await server.api.members.SetManualTier(
        member_pb2.SetManualTierRequest(
            member_id=gold.id, tier="gold", reason="vip", operator_id="ops-1"
        )
    )
    await stub(server).OpenCard(
        cards_pb2.OpenCardRequest(card_number=numbers.number("88", 1), member_id=gold.id)
    )
    kept = await server.api.members.EvaluateTier(member_pb2.EvaluateTierRequest(member_id=gold.id))
    assert kept.manual_tier == "gold"


async def test_scopes_a_till_may_resolve_but_not_manage(server: Running) -> None:
    member_id, number = await opened(server)
    till = auth.channel(f"127.0.0.1:{server.app.port}", auth.token([scopes.MERCHANT]))
    try:
        from loyalty.v1 import cards_pb2_grpc

        as_till = cards_pb2_grpc.CardServiceStub(till)
        got = await as_till.ResolveCard(cards_pb2.ResolveCardRequest(card_number=number))
        assert got.member_id == member_id
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await as_till.UnlockCard(cards_pb2.UnlockCardRequest(card_number=number))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await till.close()


async def test_a_storefront_cannot_open_a_card(server: Running) -> None:
    # Card numbers are sequential with a check digit, not a secret: a member opening "any
    # issued card" could take a gold card's tier by guessing the next number.
    await card_type(server, default_tier="gold")
    number = (await issue(server, "gold-card", 3)).batch.first_number
    member = await server.api.member()
    shop = auth.channel(f"127.0.0.1:{server.app.port}", auth.token([scopes.STOREFRONT]))
    try:
        from loyalty.v1 import cards_pb2_grpc

        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await cards_pb2_grpc.CardServiceStub(shop).OpenCard(
                cards_pb2.OpenCardRequest(card_number=number, member_id=member.id)
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await shop.close()
    assert pg_rows(server, "SELECT state FROM cards WHERE number = %s", number) == [("ISSUED",)]
