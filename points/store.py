"""PostgreSQL steps of the points ledger, for use inside one transaction.

Each step expects the member's row lock (lock_members takes them in id order, the one
lock order of the service: campaigns, then members by id). The SQL functions they call
live in points/sql/ (entries.sql, lots.sql, debt.sql) and are the same ones the group commit uses, so
every debit takes lots soonest expiry first, wherever it happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncCursor

from common.errors import NotFound
from points.gate import MemberMirror

Cursor = AsyncCursor[dict[str, Any]]

MEMBER_STATE = (
    "id::text, points_balance, points_held, points_debt, lifetime_earned, version, frozen, "
    "frozen_reason, redemption_eligible, tier, tier_valid_until, manual_tier"
)


@dataclass(frozen=True)
class Posted:
    entry_id: str
    balance: int
    debt: int


@dataclass(frozen=True)
class Spent:
    lot_id: str
    points: int
    expires_at: datetime | None


async def lock_members(cur: Cursor, *member_ids: str) -> dict[str, dict[str, Any]]:
    """Locks the members in id order; NotFound names the first one missing."""
    ids = sorted(set(member_ids))
    await cur.execute(
        f"SELECT {MEMBER_STATE} FROM members WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE",
        (ids,),
    )
    rows = {row["id"]: row for row in await cur.fetchall()}
    for member_id in member_ids:
        if member_id not in rows:
            raise NotFound("member", member_id)
    return rows


async def require_member(cur: Cursor, member_id: str) -> None:
    """NotFound unless the member exists. No lock: for reads, and for naming another member."""
    await cur.execute("SELECT 1 FROM members WHERE id = %s", (member_id,))
    if await cur.fetchone() is None:
        raise NotFound("member", member_id)


async def state(cur: Cursor, member_id: str) -> dict[str, Any]:
    await cur.execute(f"SELECT {MEMBER_STATE} FROM members WHERE id = %s", (member_id,))
    row = await cur.fetchone()
    assert row is not None
    return row


def mirror_of(row: dict[str, Any]) -> MemberMirror:
    return MemberMirror(
        spendable=row["points_balance"] - row["points_held"],
        version=row["version"],
        frozen=bool(row["frozen"]),
        eligible=bool(row["redemption_eligible"]),
    )


async def mirror(cur: Cursor, member_id: str) -> MemberMirror:
    return mirror_of(await state(cur, member_id))


async def post(
    cur: Cursor,
    member_id: str,
    *,
    kind: str,
    amount: int,
    reference: str,
    reason: str,
    debt_change: int = 0,
    key_scope: str = "",
    key: str | None = None,
    operator_id: str | None = None,
    counterparty_id: str | None = None,
    actor: str | None = None,
) -> Posted:
    """One ledger entry and the balance (and debt) change it explains. `actor`: the
    credential's subject when an operator makes the entry by hand (common.actor)."""
    await cur.execute(
        "SELECT out_entry::text, out_balance, out_debt FROM "
        "post_entry(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            member_id,
            kind,
            amount,
            debt_change,
            reference,
            reason,
            key_scope,
            key,
            operator_id,
            counterparty_id,
            actor,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return Posted(row["out_entry"], row["out_balance"], row["out_debt"])


async def add_lot(
    cur: Cursor,
    member_id: str,
    *,
    source: str,
    points: int,
    expires_at: datetime | None,
    reference: str,
    qualifying: int = 0,
    earned_at: datetime | None = None,
) -> str:
    await cur.execute(
        "INSERT INTO point_lots (member_id, source, amount, remaining, qualifying, earned_at, "
        "expires_at, reference) VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()), %s, %s) "
        "RETURNING id::text",
        (member_id, source, points, points, qualifying, earned_at, expires_at, reference),
    )
    row = await cur.fetchone()
    assert row is not None
    return str(row["id"])


async def spend(cur: Cursor, member_id: str, points: int, reference: str) -> list[Spent]:
    """Takes points from the member's lots, soonest expiry first."""
    await cur.execute(
        "SELECT spent_lot::text, spent_points, spent_expires_at FROM spend_lots(%s, %s, %s)",
        (member_id, points, reference),
    )
    return [
        Spent(r["spent_lot"], r["spent_points"], r["spent_expires_at"])
        for r in await cur.fetchall()
    ]


async def expire_due(cur: Cursor, member_id: str, now: datetime | None = None) -> int:
    """Expires what remains of the member's lots due at `now` (default: the clock)."""
    await cur.execute(
        "SELECT expire_due_lots(%s, coalesce(%s, clock_timestamp())) AS n", (member_id, now)
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def repay_debt(
    cur: Cursor, member_id: str, reference: str, *, actor: str | None = None
) -> int:
    """Repays debt from what the member can spend; `actor` as for post()."""
    await cur.execute("SELECT repay_debt(%s, %s, %s) AS n", (member_id, reference, actor))
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def add_lifetime(cur: Cursor, member_id: str, points: int, threshold: int) -> None:
    """Lifetime earned points change (earnings +, reversals -) and, with them, whether the
    member has reached the redemption threshold."""
    await cur.execute(
        "UPDATE members SET lifetime_earned = greatest(0, lifetime_earned + %s), "
        "redemption_eligible = greatest(0, lifetime_earned + %s) >= %s, "
        "version = version + 1 WHERE id = %s",
        (points, points, threshold, member_id),
    )


async def keyed_entry(cur: Cursor, member_id: str, scope: str, key: str) -> dict[str, Any] | None:
    """The member's entry posted under this idempotency key (in this scope), if any."""
    await cur.execute(
        "SELECT id::text, amount, reason, reference FROM ledger_entries "
        "WHERE member_id = %s AND key_scope = %s AND idempotency_key = %s",
        (member_id, scope, key),
    )
    return await cur.fetchone()
