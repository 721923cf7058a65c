"""The outbox append: a row per call, in the caller's transaction (a rollback leaves none)."""

from __future__ import annotations

import psycopg
import pytest

import events
from server.app import Stores


async def test_append_writes_in_the_callers_transaction(clean: Stores) -> None:
    async with await psycopg.AsyncConnection.connect(clean.database_url) as conn:
        first = await events.append(
            conn, events.EventType.STOCK_ADJUSTED, "item", "i1", {"delta": 3}
        )
        second = await events.append(
            conn, events.EventType.STOCK_ADJUSTED, "item", "i1", {"delta": -1}, actor="ops"
        )
        await conn.commit()
        assert second > first
        async with conn.transaction(force_rollback=True):
            await events.append(conn, events.EventType.STOCK_ADJUSTED, "item", "i2", {})
        cur = await conn.execute("SELECT subject_id, actor, payload FROM events ORDER BY sequence")
        assert await cur.fetchall() == [("i1", None, {"delta": 3}), ("i1", "ops", {"delta": -1})]


async def test_a_type_outside_the_dotted_form_is_refused(clean: Stores) -> None:
    async with await psycopg.AsyncConnection.connect(clean.database_url) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute("SELECT append_event('Committed', 'redemption', 'r', '{}')")
