"""Raising a member's manual tier floor inside another domain's transaction: opening a
member card whose type carries a default tier (cards/cards.py). The floor is only raised,
never lowered: a member already holding a higher manual tier keeps it, and SetManualTier
stays the operator's way to lower or clear it."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from points import store
from points.program import Program


async def raise_manual_floor(
    conn: AsyncConnection[Any], *, member_id: str, tier: str, program: Program, reason: str
) -> bool:
    """Locks the member (NotFound if missing) and sets its manual tier to `tier` when that
    is higher than the one it has. The caller is inside a transaction and takes no member
    lock after its own card locks (lock order: member, then cards). Returns whether the
    floor changed."""
    cur = conn.cursor(row_factory=dict_row)
    row = (await store.lock_members(cur, member_id))[member_id]
    if not tier:
        return False
    held = program.level(row["manual_tier"]) if row["manual_tier"] else -1
    if program.tier(tier) is None or program.level(tier) <= held:
        return False
    await cur.execute("UPDATE members SET manual_tier = %s WHERE id = %s", (tier, member_id))
    await cur.execute(
        "INSERT INTO member_actions (member_id, action, detail, reason) "
        "VALUES (%s, 'manual_tier', %s, %s)",
        (member_id, tier, reason),
    )
    return True


async def lock_member(conn: AsyncConnection[Any], member_id: str) -> None:
    """Locks the member (NotFound if missing), for a caller that keeps the lock order."""
    await store.lock_members(conn.cursor(row_factory=dict_row), member_id)
