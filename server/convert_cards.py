"""CardService's conversions: cards domain objects -> protobuf."""

from __future__ import annotations

from cards.model import Card, CardBatch, CardState, CardType
from loyalty.v1 import cards_pb2
from server import convert

_STATES = {
    CardState.ISSUED: cards_pb2.CARD_STATE_ISSUED,
    CardState.ACTIVE: cards_pb2.CARD_STATE_ACTIVE,
    CardState.LOST: cards_pb2.CARD_STATE_LOST,
    CardState.REPLACED: cards_pb2.CARD_STATE_REPLACED,
}


def card_type(value: CardType) -> cards_pb2.CardType:
    return cards_pb2.CardType(
        code=value.code,
        name=value.name,
        default_tier=value.default_tier,
        prefix=value.prefix,
        issued=value.issued,
        create_time=convert.timestamp(value.created_at),
    )


def batch(value: CardBatch) -> cards_pb2.CardBatch:
    return cards_pb2.CardBatch(
        id=value.id,
        card_type=value.card_type,
        request_id=value.request_id,
        count=value.count,
        first_number=value.first_number,
        last_number=value.last_number,
        create_time=convert.timestamp(value.created_at),
    )


def card(value: Card) -> cards_pb2.Card:
    return cards_pb2.Card(
        card_number=value.number,
        card_type=value.card_type,
        batch_id=value.batch_id,
        state=_STATES[value.state],
        member_id=value.member_id,
        open_time=convert.timestamp(value.opened_at),
        lost_time=convert.timestamp(value.lost_at),
    )
