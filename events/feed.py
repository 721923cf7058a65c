"""Reading the outbox in order, never skipping a row that commits late.

Sequences are handed out before commit, so rows become visible out of sequence order: 7
may be visible while 6's transaction still runs. A consumer that took 7 and later resumed
"after 7" would never see 6. So a page is handed out in sequence order and stops at the
first row that is not yet safe:

- a row whose writing transaction (events.txid) is not older than every transaction still
  running (pg_snapshot_xmin of the reading statement's own snapshot) waits: an older
  transaction may still add rows below it;
- a missing sequence (a gap) waits until it is known to be nobody's. Its writer took the
  sequence inside an INSERT INTO events, holding that table's RowExclusiveLock from before
  the sequence until its transaction ends. So when the gap is first seen, the transactions
  holding that lock are noted (pg_locks); once none of them holds it any more (checked in a
  statement before the next read, so the read's snapshot comes after they ended) and the
  sequence is still missing, it was rolled back and is stepped over.

The xmin rule alone is not enough: a transaction that got its id early and its sequence
late can commit a higher sequence with a lower id while the lower sequence's writer runs
(tests/events/test_ordering.py). Nor is an xid horizon from the snapshot: pg_snapshot_xmax is
one past the newest *completed* transaction, and a running writer's id may be above it.

A type filter does not change the walk: every row is stepped over in order (a gap can only
be told from a row of another type by reading it), and only wanted rows are handed out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from common.errors import InvalidArgument
from events.errors import EventsPruned
from events.model import EventType

MAX_PAGE = 1000

_PAGE = """
SELECT p.through,
       e.sequence, e.txid < s.xmin AS settled, e.type, e.subject_kind, e.subject_id,
       e.actor, e.occurred_at, CASE WHEN e.wanted THEN e.payload END, e.wanted
  FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) s
 CROSS JOIN events_pruned p
  LEFT JOIN LATERAL (
        SELECT x.*, (%(all)s OR x.type = ANY(%(types)s)) AS wanted FROM events x
         WHERE x.sequence > %(after)s ORDER BY x.sequence LIMIT %(limit)s) e ON true
 ORDER BY e.sequence
"""


@dataclass(frozen=True)
class Event:
    sequence: int
    type: str
    subject_kind: str
    subject_id: str
    actor: str | None
    occurred_at: datetime
    payload: dict[str, Any]


def event_types(types: Iterable[str]) -> frozenset[str]:
    """The filter, checked: every name a known type (InvalidArgument on field `types`)."""
    known = {t.value for t in EventType}
    wanted = frozenset(types)
    for name in sorted(wanted):
        if name not in known:
            raise InvalidArgument("types", f"unknown event type {name!r}; see docs/events.md")
    return wanted


def after_sequence(value: int) -> int:
    if value < 0:
        raise InvalidArgument("after_sequence", "must be 0 (from the start) or more")
    return value


@dataclass
class Cursor:
    """One consumer's place: the last sequence stepped over (handed out or not wanted), and
    the gap just after it, if one is waited on: its first sequence, the transactions that
    were writing events when it was first seen, and whether they have all ended since."""

    after: int
    gap: tuple[int, list[str]] | None = None
    gap_clear: bool = False


@dataclass(frozen=True)
class Page:
    events: list[Event]
    full: bool  # the page was cut by its size, not by a row or gap not yet safe
    gap_seen: bool  # stopped at a gap first seen now: worth reading again shortly


_WRITERS = (
    "SELECT coalesce(array_agg(virtualtransaction::text), '{}') FROM pg_locks "
    "WHERE locktype = 'relation' AND relation = 'events'::regclass "
    "AND mode = 'RowExclusiveLock' AND pid IS DISTINCT FROM pg_backend_pid()"
)
_STILL_WRITING = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'relation' "
    "AND relation = 'events'::regclass AND virtualtransaction = ANY(%s::text[]))"
)


async def read_page(
    conn: AsyncConnection[Any], cursor: Cursor, types: frozenset[str], limit: int
) -> Page:
    """The next safe rows after cursor.after (at most `limit` looked at); moves the cursor.
    EventsPruned when the cursor is below what retention kept. `conn` in autocommit: each
    statement its own snapshot."""
    if cursor.gap is not None and not cursor.gap_clear:
        # Before the read, so the read's snapshot is taken after they ended.
        cur = await conn.execute(_STILL_WRITING, (cursor.gap[1],))
        row = await cur.fetchone()
        cursor.gap_clear = row is not None and not row[0]
    cur = await conn.execute(
        _PAGE,
        {"all": not types, "types": list(types), "after": cursor.after, "limit": limit},
    )
    rows = await cur.fetchall()
    pruned = rows[0][0]
    if cursor.after < pruned:
        raise EventsPruned(cursor.after, pruned + 1)
    out: list[Event] = []
    looked = 0
    for row in rows:
        sequence = row[1]
        if sequence is None:
            break  # nothing after the cursor
        if sequence != cursor.after + 1:
            first = cursor.after + 1
            if cursor.gap is None or cursor.gap[0] != first:
                cur = await conn.execute(_WRITERS)
                writers = await cur.fetchone()
                cursor.gap, cursor.gap_clear = (first, writers[0] if writers else []), False
                return Page(out, full=False, gap_seen=True)
            if not cursor.gap_clear:
                return Page(out, full=False, gap_seen=False)  # its writer may still run
        if not row[2]:
            return Page(out, full=False, gap_seen=False)
        cursor.after, cursor.gap, cursor.gap_clear = sequence, None, False
        looked += 1
        if row[9]:
            out.append(Event(sequence, row[3], row[4], row[5], row[6], row[7], row[8]))
    return Page(out, full=looked == limit, gap_seen=False)
