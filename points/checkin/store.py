"""SQL reads and writes of check-ins, no rules. Writes expect the member's row lock
(points.store.lock_members), as every step of the ledger does."""

from __future__ import annotations

from datetime import date
from typing import Any

from points.checkin.model import CheckIn
from points.store import Cursor

_COLUMNS = (
    "id::text, member_id::text, local_day, streak, points, ledger_entry_id::text, checked_in_at"
)


def _checkin(row: dict[str, Any]) -> CheckIn:
    return CheckIn(
        id=row["id"],
        member_id=row["member_id"],
        day=row["local_day"],
        streak=row["streak"],
        points=row["points"],
        ledger_entry_id=row["ledger_entry_id"],
        checked_in_at=row["checked_in_at"],
    )


async def by_key(cur: Cursor, member_id: str, key: str) -> CheckIn | None:
    await cur.execute(
        f"SELECT {_COLUMNS} FROM checkins WHERE member_id = %s AND idempotency_key = %s",
        (member_id, key),
    )
    row = await cur.fetchone()
    return None if row is None else _checkin(row)


async def last(cur: Cursor, member_id: str) -> CheckIn | None:
    """The member's latest check-in (by local day)."""
    await cur.execute(
        f"SELECT {_COLUMNS} FROM checkins WHERE member_id = %s ORDER BY local_day DESC LIMIT 1",
        (member_id,),
    )
    row = await cur.fetchone()
    return None if row is None else _checkin(row)


async def insert(
    cur: Cursor,
    *,
    member_id: str,
    day: date,
    key: str,
    streak: int,
    points: int,
    ledger_entry_id: str,
) -> CheckIn:
    await cur.execute(
        "INSERT INTO checkins (member_id, local_day, idempotency_key, streak, points, "
        f"ledger_entry_id) VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (member_id, day, key, streak, points, ledger_entry_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return _checkin(row)


# The audit's checks (flashsale/audit.py runs them): an empty answer is a pass.
AUDIT_CHECKS: list[tuple[str, str]] = [
    (
        "check-in without its earn entry (same member, amount and reference 'checkin:<day>')",
        "SELECT c.id::text, c.member_id::text, c.local_day, c.points FROM checkins c "
        "LEFT JOIN ledger_entries e ON e.id = c.ledger_entry_id "
        "WHERE e.id IS NULL OR e.member_id <> c.member_id OR e.kind <> 'earn' "
        "OR e.amount <> c.points OR e.reference <> 'checkin:' || c.local_day::text",
    ),
]
