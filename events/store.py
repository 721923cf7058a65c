"""Writing to the outbox, inside the caller's transaction."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from events.model import EventType


async def append(
    conn: AsyncConnection[Any],
    type_: EventType,
    subject_kind: str,
    subject_id: str,
    payload: dict[str, Any],
    actor: str | None = None,
) -> int:
    """Appends one event in `conn`'s transaction; returns its sequence."""
    cur = await conn.execute(
        "SELECT append_event(%s, %s, %s, %s, %s)",
        (str(type_), subject_kind, subject_id, Jsonb(payload), actor),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])
