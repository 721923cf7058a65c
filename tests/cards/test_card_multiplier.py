"""A card type's points multiplier: an earn rule with the card_types condition holds for a
member with an ACTIVE card of the type, and stops at once when the card is reported lost."""

from __future__ import annotations

import grpc
import pytest

from loyalty.v1 import cards_pb2
from tests.cards.helpers import opened, stub
from tests.conftest import Running
from tests.factories import failure
from tests.points.earn_rules_helpers import MULTIPLIER, buy, create_rule


async def test_a_card_types_multiplier_holds_while_the_card_is_active(server: Running) -> None:
    holder, number = await opened(server)
    other = await server.api.member()
    rule = await create_rule(
        server, "gold card double", MULTIPLIER, {"card_types": ["gold-card"]}, multiplier="2"
    )

    with_card = await buy(server, holder, 10_000)
    without = await buy(server, other.id, 10_000)
    await stub(server).ReportCardLost(
        cards_pb2.ReportCardLostRequest(card_number=number, member_id=holder, reason="stolen")
    )
    after_lost = await buy(server, holder, 10_000)

    assert list(rule.conditions.card_types) == ["gold-card"]
    assert (with_card.base_points, with_card.points) == (100, 200)
    assert [r.rule_id for r in with_card.applied_rules] == [rule.id]
    assert (without.points, list(without.applied_rules)) == (100, [])
    assert (after_lost.points, list(after_lost.applied_rules)) == (100, [])


async def test_an_unknown_card_type_is_refused_naming_it(server: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create_rule(server, "ghost", MULTIPLIER, {"card_types": ["nope"]}, multiplier="2")

    assert failure(refused.value).field == "card_types"
