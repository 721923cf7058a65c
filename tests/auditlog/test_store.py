"""record() writes inside its caller's transaction only, with the actor of common.actor and
the content redacted; the table refuses UPDATE and DELETE."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.rows import dict_row

import auditlog
from common.actor import Actor, acting_as
from server.app import Stores


async def _rows(stores: Stores) -> list[dict[str, object]]:
    async with await psycopg.AsyncConnection.connect(stores.database_url) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT subject, request_id, action, target_kind, target_id, content "
            "FROM audit_events ORDER BY id"
        )
        return await cur.fetchall()


async def test_record_writes_the_actor_and_the_redacted_content(clean: Stores) -> None:
    async with await psycopg.AsyncConnection.connect(clean.database_url) as conn:
        with acting_as(Actor("ops:ann", "req-1")):
            await conn.execute("SELECT 1")  # the change would be here: a transaction is open
            await auditlog.record(
                conn,
                auditlog.ADJUST_STOCK,
                target_kind=auditlog.ITEM,
                target_id="i-1",
                content={"delta": 2, "api_key": "s3cret", "at": datetime(2026, 1, 2, tzinfo=UTC)},
            )
        await conn.commit()

    assert await _rows(clean) == [
        {
            "subject": "ops:ann",
            "request_id": "req-1",
            "action": "catalog.adjust_stock",
            "target_kind": "item",
            "target_id": "i-1",
            "content": {
                "delta": 2,
                "api_key": auditlog.REDACTED,
                "at": "2026-01-02T00:00:00+00:00",
            },
        }
    ]


async def test_record_refuses_to_write_outside_a_transaction(clean: Stores) -> None:
    """The pool's connections are autocommit: an event written outside the change's
    transaction would commit on its own, whatever became of the change. Nor is an event
    written without a subject or for an action nobody declared."""
    async with await psycopg.AsyncConnection.connect(clean.database_url, autocommit=True) as conn:
        with pytest.raises(RuntimeError, match="inside the change's transaction"):
            await auditlog.record(
                conn, auditlog.CREATE_ITEM, target_kind=auditlog.ITEM, target_id="i", content={}
            )
        async with conn.transaction():
            with (
                acting_as(Actor("", "req-2")),
                pytest.raises(RuntimeError, match="subject"),
            ):
                await auditlog.record(
                    conn, auditlog.CREATE_ITEM, target_kind=auditlog.ITEM, target_id="i", content={}
                )
        with pytest.raises(ValueError, match="unknown audit action"):
            async with conn.transaction():
                await auditlog.record(
                    conn, "catalog.sell_everything", target_kind="item", target_id="i", content={}
                )
    assert await _rows(clean) == []


async def test_events_cannot_be_changed_or_removed(clean: Stores) -> None:
    async with (
        await psycopg.AsyncConnection.connect(clean.database_url, autocommit=True) as conn,
        conn.transaction(),
    ):
        await auditlog.record(
            conn, auditlog.FREEZE_MEMBER, target_kind=auditlog.MEMBER, target_id="m", content={}
        )
    before = await _rows(clean)

    async with await psycopg.AsyncConnection.connect(clean.database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: UPDATE"):
            await conn.execute("UPDATE audit_events SET subject = 'someone else'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: DELETE"):
            await conn.execute("DELETE FROM audit_events")

    assert before and await _rows(clean) == before
