"""CardService. Operators issue and manage member cards; a till checks and resolves them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cards.cards import Cards
from loyalty.v1 import cards_pb2, cards_pb2_grpc
from server import convert_cards

if TYPE_CHECKING:
    from server.services import Context


class CardService(cards_pb2_grpc.CardServiceServicer):
    def __init__(self, cards: Cards) -> None:
        self._cards = cards

    async def CreateCardType(
        self, request: cards_pb2.CreateCardTypeRequest, context: Context
    ) -> cards_pb2.CardType:
        created = await self._cards.create_type(
            code=request.code,
            name=request.name,
            default_tier=request.default_tier,
            prefix=request.prefix,
        )
        return convert_cards.card_type(created)

    async def IssueCards(
        self, request: cards_pb2.IssueCardsRequest, context: Context
    ) -> cards_pb2.IssueCardsResponse:
        made = await self._cards.issue(
            card_type=request.card_type, count=request.count, request_id=request.request_id
        )
        return cards_pb2.IssueCardsResponse(batch=convert_cards.batch(made), replayed=made.replayed)

    async def ExportCards(
        self, request: cards_pb2.ExportCardsRequest, context: Context
    ) -> cards_pb2.ExportCardsResponse:
        page = await self._cards.export(
            batch_id=request.batch_id, page_size=request.page_size, page_token=request.page_token
        )
        return cards_pb2.ExportCardsResponse(
            card_numbers=page.numbers, next_page_token=page.next_page_token
        )

    async def OpenCard(
        self, request: cards_pb2.OpenCardRequest, context: Context
    ) -> cards_pb2.Card:
        opened = await self._cards.open(
            card_number=request.card_number, member_id=request.member_id
        )
        return convert_cards.card(opened)

    async def ReportCardLost(
        self, request: cards_pb2.ReportCardLostRequest, context: Context
    ) -> cards_pb2.Card:
        lost = await self._cards.report_lost(
            card_number=request.card_number, member_id=request.member_id, reason=request.reason
        )
        return convert_cards.card(lost)

    async def UnlockCard(
        self, request: cards_pb2.UnlockCardRequest, context: Context
    ) -> cards_pb2.Card:
        unlocked = await self._cards.unlock(card_number=request.card_number, reason=request.reason)
        return convert_cards.card(unlocked)

    async def ReplaceCard(
        self, request: cards_pb2.ReplaceCardRequest, context: Context
    ) -> cards_pb2.ReplaceCardResponse:
        old, new = await self._cards.replace(
            card_number=request.card_number,
            new_card_number=request.new_card_number,
            reason=request.reason,
        )
        return cards_pb2.ReplaceCardResponse(
            old_card=convert_cards.card(old), new_card=convert_cards.card(new)
        )

    async def CheckCard(
        self, request: cards_pb2.CheckCardRequest, context: Context
    ) -> cards_pb2.CheckCardResponse:
        checked = await self._cards.check(request.card_number)
        return cards_pb2.CheckCardResponse(
            card_number=checked.number,
            valid=checked.valid,
            issued=checked.card is not None,
            card=convert_cards.card(checked.card) if checked.card is not None else None,
        )

    async def ResolveCard(
        self, request: cards_pb2.ResolveCardRequest, context: Context
    ) -> cards_pb2.ResolveCardResponse:
        found = await self._cards.resolve(request.card_number)
        return cards_pb2.ResolveCardResponse(member_id=found.member_id, card_type=found.card_type)
