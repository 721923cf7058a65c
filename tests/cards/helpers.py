"""Shared steps for member card tests: a card type, a batch, an opened card, PostgreSQL."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import psycopg

from loyalty.v1 import cards_pb2, cards_pb2_grpc
from tests.conftest import Running

if TYPE_CHECKING:
    from loyalty.v1.cards_pb2_grpc import CardServiceAsyncStub


def stub(running: Running) -> CardServiceAsyncStub:
    return cards_pb2_grpc.CardServiceStub(running.channel)


def pg_rows(running: Running, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(running.app.stores.database_url) as conn:
        return list(conn.execute(sql, args).fetchall())


async def card_type(
    running: Running, *, code: str = "gold-card", prefix: str = "88", default_tier: str = ""
) -> cards_pb2.CardType:
    return await stub(running).CreateCardType(
        cards_pb2.CreateCardTypeRequest(
            code=code, name="Gold card", prefix=prefix, default_tier=default_tier
        )
    )


async def issue(
    running: Running, card_type: str, count: int, request_id: str | None = None
) -> cards_pb2.IssueCardsResponse:
    return await stub(running).IssueCards(
        cards_pb2.IssueCardsRequest(
            card_type=card_type, count=count, request_id=request_id or "r-" + uuid.uuid4().hex
        )
    )


async def opened(running: Running, *, default_tier: str = "") -> tuple[str, str]:
    """(member id, card number) of a card opened for a new member, and 4 more issued."""
    await card_type(running, default_tier=default_tier)
    batch = (await issue(running, "gold-card", 5)).batch
    member = await running.api.member()
    await stub(running).OpenCard(
        cards_pb2.OpenCardRequest(card_number=batch.first_number, member_id=member.id)
    )
    return member.id, batch.first_number


async def resolve(running: Running, number: str) -> cards_pb2.ResolveCardResponse:
    return await stub(running).ResolveCard(cards_pb2.ResolveCardRequest(card_number=number))


async def check(running: Running, number: str) -> cards_pb2.CheckCardResponse:
    return await stub(running).CheckCard(cards_pb2.CheckCardRequest(card_number=number))


def pg_exec(running: Running, sql: str, *args: Any) -> None:
    with psycopg.connect(running.app.stores.database_url) as conn:
        conn.execute(sql, args)
