"""Rows become visible out of sequence order (sequences are taken before commit): the stream
waits for the lower one instead of skipping it, and steps over a rolled-back sequence."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import events
from events import feed
from server.app import Stores
from tests.conftest import Running
from tests.events.helpers import Watcher


def _append(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute(
        "SELECT append_event('stock.adjusted', 'item', %s, '{}')", (name,)
    ).fetchone()
    assert row is not None
    return int(row[0])


async def test_two_transactions_committing_out_of_sequence_order_are_both_seen(
    server: Running,
) -> None:
    url = server.app.stores.database_url
    watcher = Watcher(server.channel, 0)
    try:
        with psycopg.connect(url) as early, psycopg.connect(url) as late:
            low = _append(early, "low")  # sequence n, its transaction still open
            high = _append(late, "high")  # sequence n + 1
            late.commit()  # n + 1 is visible, n is not yet
            assert high > low
            assert await watcher.quiet(1.5)  # handing out n + 1 now would skip n forever
            early.commit()
            got = await watcher.take(2, timeout_s=5.0)
    finally:
        await watcher.close()
    assert [(e.sequence, e.subject_id) for e in got] == [(low, "low"), (high, "high")]


async def test_a_lower_sequence_of_an_older_running_transaction_is_waited_for(
    clean: Stores,
) -> None:
    """The case the xmin rule alone gets wrong: the transaction with the higher sequence got
    its transaction id first, so its row is older than xmin while the lower one still runs."""
    url = clean.database_url
    cursor = feed.Cursor(0)
    with psycopg.connect(url) as first_id, psycopg.connect(url) as second_id:
        first_id.execute("SELECT pg_current_xact_id()")  # the lower id, taken now
        low = _append(second_id, "low")  # the higher id takes the lower sequence
        high = _append(first_id, "high")
        first_id.commit()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for _ in range(3):
                page = await feed.read_page(conn, cursor, frozenset(), 100)
                assert page.events == []  # neither: "high" would skip "low"
            second_id.commit()
            handed: list[feed.Event] = []
            for _ in range(3):
                handed += (await feed.read_page(conn, cursor, frozenset(), 100)).events
    assert [(e.sequence, e.subject_id) for e in handed] == [(low, "low"), (high, "high")]


async def test_a_rolled_back_sequence_is_stepped_over(clean: Stores) -> None:
    url = clean.database_url
    with psycopg.connect(url) as conn:
        before = _append(conn, "kept-1")
        conn.commit()
        _append(conn, "rolled-back")
        conn.rollback()
        after = _append(conn, "kept-2")
        conn.commit()
    cursor = feed.Cursor(0)
    handed: list[feed.Event] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as aconn:
        for _ in range(4):
            handed += (await feed.read_page(aconn, cursor, frozenset(), 100)).events
    assert [e.sequence for e in handed] == [before, after]
    assert after == before + 2


async def test_a_type_filter_still_walks_every_row_in_order(clean: Stores) -> None:
    async with await psycopg.AsyncConnection.connect(clean.database_url) as conn:
        for i in range(5):
            kind = events.EventType.STOCK_ADJUSTED if i % 2 else events.EventType.POINTS_EARNED
            await events.append(conn, kind, "item", f"i{i}", {"i": i})
        await conn.commit()
    cursor = feed.Cursor(0)
    async with await psycopg.AsyncConnection.connect(clean.database_url, autocommit=True) as c:
        handed: list[feed.Event] = []
        for _ in range(6):  # a page of 2 at a time
            handed += (await feed.read_page(c, cursor, frozenset({"stock.adjusted"}), 2)).events
    assert [e.payload["i"] for e in handed] == [1, 3]


def test_unknown_types_and_negative_sequences_are_refused() -> None:
    from common.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as raised:
        feed.event_types(["points.earned", "points.stolen"])
    assert raised.value.field == "types"
    with pytest.raises(InvalidArgument):
        feed.after_sequence(-5)
