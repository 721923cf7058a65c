"""What cards a member holds, for other domains (earn rules' card-type condition): a
public read that takes the caller's cursor, so the answer is the one of its transaction."""

from __future__ import annotations

from typing import Any


async def active_card_types(cur: Any, member_id: str) -> frozenset[str]:
    """The codes of the types of the member's ACTIVE cards (a lost or replaced card counts
    for nothing, from the moment it was reported)."""
    await cur.execute(
        "SELECT DISTINCT card_type AS code FROM cards WHERE member_id = %s AND state = 'ACTIVE'",
        (member_id,),
    )
    return frozenset(str(_first(row)) for row in await cur.fetchall())


async def unknown_card_types(cur: Any, codes: tuple[str, ...]) -> list[str]:
    """Those of `codes` that name no card type."""
    if not codes:
        return []
    await cur.execute("SELECT code FROM card_types WHERE code = ANY(%s)", (list(codes),))
    known = {str(_first(row)) for row in await cur.fetchall()}
    return [c for c in codes if c not in known]


def _first(row: Any) -> Any:
    return row["code"] if isinstance(row, dict) else row[0]
