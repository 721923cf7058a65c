"""Retention: events older than SURGE_EVENTS_RETENTION are deleted by the leader's pruning
job (events.stream.EventStream.prune_loop), in bounded chunks, each moving the watermark
(events_pruned.through, migration 0012) in the same transaction as its delete. A consumer
asking to resume below the watermark is told so (EventsPruned) instead of skipping events.

Rows are pruned by sequence up to the newest row older than retention, so the kept rows are
always one contiguous range of sequences.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

CHUNK = 10_000


async def prune(conn: AsyncConnection[Any], retention: timedelta) -> int:
    """Deletes events older than `retention`; returns how many. `conn` in autocommit: each
    chunk is its own transaction."""
    cur = await conn.execute(
        "SELECT max(sequence) FROM events WHERE occurred_at < clock_timestamp() - %s",
        (retention,),
    )
    row = await cur.fetchone()
    newest = row[0] if row is not None else None
    if newest is None:
        return 0
    deleted = 0
    while True:
        async with conn.transaction():
            cur = await conn.execute("SELECT through FROM events_pruned FOR UPDATE")
            through_row = await cur.fetchone()
            assert through_row is not None  # created by migration 0012
            start = through_row[0]
            if start >= newest:
                return deleted
            # From the oldest row kept (sequences may start far above the watermark).
            cur = await conn.execute(
                "SELECT min(sequence) FROM events WHERE sequence > %s", (start,)
            )
            oldest_row = await cur.fetchone()
            oldest = oldest_row[0] if oldest_row is not None else None
            upto = newest if oldest is None else min(newest, oldest + CHUNK - 1)
            cur = await conn.execute(
                "DELETE FROM events WHERE sequence > %s AND sequence <= %s", (start, upto)
            )
            deleted += cur.rowcount
            await conn.execute("UPDATE events_pruned SET through = %s", (upto,))
