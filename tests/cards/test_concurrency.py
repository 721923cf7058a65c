"""Card changes racing: batches of one type issued at once never overlap; replacements
taking from the type's stock at once never take the same card; the schema refuses a card
whose state and columns disagree, whatever the code does."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from cards import numbers
from loyalty.v1 import cards_pb2
from tests.cards.helpers import card_type, issue, pg_exec, pg_rows, stub
from tests.conftest import Running


async def test_concurrent_batches_of_one_type_never_overlap(server: Running) -> None:
    await card_type(server)
    made = await asyncio.gather(*(issue(server, "gold-card", 300) for _ in range(5)))
    serials = sorted(
        (
            numbers.serial_of("88", m.batch.first_number),
            numbers.serial_of("88", m.batch.last_number),
        )
        for m in made
    )
    assert serials == [(i * 300, i * 300 + 299) for i in range(5)]
    assert pg_rows(server, "SELECT count(*), count(DISTINCT batch_id) FROM cards") == [(1500, 5)]


async def test_concurrent_retries_of_one_request_make_one_batch(server: Running) -> None:
    await card_type(server)
    made = await asyncio.gather(*(issue(server, "gold-card", 500, "run-7") for _ in range(4)))
    assert len({m.batch.id for m in made}) == 1
    assert sorted(m.replayed for m in made) == [False, True, True, True]
    assert pg_rows(server, "SELECT count(*) FROM cards") == [(500,)]


async def test_concurrent_replacements_take_different_cards(server: Running) -> None:
    await card_type(server)
    batch = (await issue(server, "gold-card", 20)).batch
    member = await server.api.member()
    olds = [numbers.number("88", s) for s in range(5)]
    for number in olds:
        await stub(server).OpenCard(
            cards_pb2.OpenCardRequest(card_number=number, member_id=member.id)
        )
    replaced = await asyncio.gather(
        *(
            stub(server).ReplaceCard(
                cards_pb2.ReplaceCardRequest(
                    card_number=n, new_card_number=numbers.number("88", 5 + i)
                )
            )
            for i, n in enumerate(olds)
        )
    )
    news = {r.new_card.card_number for r in replaced}
    assert len(news) == 5 and not news & set(olds)
    assert pg_rows(
        server, "SELECT count(*) FROM cards WHERE batch_id = %s AND state = 'ACTIVE'", batch.id
    ) == [(5,)]


async def test_the_schema_ties_each_state_to_its_columns(server: Running) -> None:
    await card_type(server)
    await issue(server, "gold-card", 2)
    member = await server.api.member()
    first = numbers.number("88", 0)
    for sql, args in [
        ("UPDATE cards SET state = 'ACTIVE' WHERE number = %s", (first,)),  # no owner
        ("UPDATE cards SET member_id = %s WHERE number = %s", (member.id, first)),  # still ISSUED
        ("UPDATE cards SET state = 'REPLACED' WHERE number = %s", (first,)),  # by nothing
        (
            "INSERT INTO cards (number, card_type, batch_id) SELECT number, card_type, batch_id "
            "FROM cards WHERE number = %s",
            (first,),
        ),  # the same number twice
    ]:
        with pytest.raises((psycopg.errors.CheckViolation, psycopg.errors.UniqueViolation)):
            pg_exec(server, sql, *args)
    assert pg_rows(server, "SELECT state, member_id FROM cards WHERE number = %s", first) == [
        ("ISSUED", None)
    ]


async def test_a_batch_of_100000_is_one_call(server: Running) -> None:
    await card_type(server)
    started = time.monotonic()
    made = (await issue(server, "gold-card", 100_000)).batch
    took = time.monotonic() - started
    assert made.last_number == numbers.number("88", 99_999)
    assert pg_rows(server, "SELECT count(*) FROM cards") == [(100_000,)]
    assert took < 30, took  # the service config's deadline for IssueCards
