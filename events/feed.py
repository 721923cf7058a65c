"""Reading the outbox in order, never skipping a row that commits late.

Sequences are handed out before commit, so rows become visible out of sequence order: 7
may be visible while 6's transaction still runs. A consumer that took 7 and later resumed
"after 7" would never see 6. So a page is handed out in sequence order and stops at the
first row that is not yet safe:

- a row whose writing transaction (events.txid) is not older than every transaction still
  running (pg_snapshot_xmin of the reading statement's own snapshot) waits: an older
  transaction may still add rows below it;
- a missing sequence (a gap) waits until it is known to be nobody's: its writer had its
  transaction id before it took the sequence (append_event takes the id first), so once
  every transaction that had an id when the gap was first seen has ended (a later
  snapshot's xmin has passed that first snapshot's xmax) and the sequence is still
  missing, it was rolled back (or never used) and is stepped over.

The xmin rule alone is not enough: a transaction that got its id early and its sequence
late can commit a higher sequence with a lower id while the lower sequence's writer runs.

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
SELECT s.xmin::text::bigint, s.xmax::text::bigint, p.through,
       e.sequence, e.txid < s.xmin AS settled, e.type, e.subject_kind, e.subject_id,
       e.actor, e.occurred_at, CASE WHEN e.wanted THEN e.payload END, e.wanted
  FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin,
               pg_snapshot_xmax(pg_current_snapshot()) AS xmax) s
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
    the gap just after it, if one is waited on: (its first sequence, the xmax when seen)."""

    after: int
    gap: tuple[int, int] | None = None


@dataclass(frozen=True)
class Page:
    events: list[Event]
    full: bool  # the page was cut by its size, not by a row or gap not yet safe
    gap_seen: bool  # stopped at a gap first seen now: worth reading again shortly


async def read_page(
    conn: AsyncConnection[Any], cursor: Cursor, types: frozenset[str], limit: int
) -> Page:
    """The next safe rows after cursor.after (at most `limit` looked at); moves the cursor.
    EventsPruned when the cursor is below what retention kept."""
    cur = await conn.execute(
        _PAGE,
        {"all": not types, "types": list(types), "after": cursor.after, "limit": limit},
    )
    rows = await cur.fetchall()
    xmin, xmax, pruned = rows[0][0], rows[0][1], rows[0][2]
    if cursor.after < pruned:
        raise EventsPruned(cursor.after, pruned + 1)
    out: list[Event] = []
    looked = 0
    for row in rows:
        sequence = row[3]
        if sequence is None:
            break  # nothing after the cursor
        if sequence != cursor.after + 1:
            first = cursor.after + 1
            new = cursor.gap is None or cursor.gap[0] != first
            if new:
                cursor.gap = (first, xmax)
            assert cursor.gap is not None
            # With nothing running now (xmin = xmax) a gap seen now is already nobody's.
            if xmin < cursor.gap[1]:
                return Page(out, full=False, gap_seen=new)  # its writer may still run
        if not row[4]:
            return Page(out, full=False, gap_seen=False)
        cursor.after, cursor.gap = sequence, None
        looked += 1
        if row[11]:
            out.append(Event(sequence, row[5], row[6], row[7], row[8], row[9], row[10]))
    return Page(out, full=looked == limit, gap_seen=False)
