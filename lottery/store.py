"""SQL reads and writes of lotteries, prizes and draws; no rules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from lottery.model import Draw, Lottery, Prize, PrizeKind, PrizeSpec

_PRIZE_COLUMNS = "id, position, name, kind, item_id, campaign_id, weight, stock, awarded"


async def insert_lottery(
    conn: AsyncConnection[Any],
    *,
    name: str,
    cost_points: int,
    starts_at: datetime,
    ends_at: datetime,
    per_member_daily: int,
    per_member_total: int,
    created_by: str,
) -> str:
    cur = await conn.execute(
        "INSERT INTO lotteries (name, cost_points, starts_at, ends_at, per_member_daily, "
        "per_member_total, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (name, cost_points, starts_at, ends_at, per_member_daily, per_member_total, created_by),
    )
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def insert_prizes(
    conn: AsyncConnection[Any], lottery_id: str, prizes: Sequence[PrizeSpec]
) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO lottery_prizes (lottery_id, position, name, kind, item_id, weight, "
            "stock) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    lottery_id,
                    i,
                    p.name,
                    str(p.kind),
                    p.item_id if p.kind is PrizeKind.GOOD else None,
                    p.weight,
                    p.stock if p.kind is PrizeKind.GOOD else None,
                )
                for i, p in enumerate(prizes)
            ],
        )


async def missing_items(conn: AsyncConnection[Any], item_ids: Sequence[str]) -> list[str]:
    cur = await conn.execute(
        "SELECT x FROM unnest(%s::uuid[]) x WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.id = x)",
        (list(item_ids),),
    )
    return [str(r[0]) for r in await cur.fetchall()]


async def lottery(conn: AsyncConnection[Any], lottery_id: str) -> Lottery | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT * FROM lotteries WHERE id = %s", (lottery_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    await cur.execute(
        f"SELECT {_PRIZE_COLUMNS} FROM lottery_prizes WHERE lottery_id = %s ORDER BY position",
        (lottery_id,),
    )
    return _lottery(row, [_prize(p) for p in await cur.fetchall()])


async def lotteries_page(
    conn: AsyncConnection[Any], after: tuple[datetime, str] | None, size: int
) -> list[Lottery]:
    cur = conn.cursor(row_factory=dict_row)
    if after is None:
        await cur.execute(
            "SELECT * FROM lotteries ORDER BY created_at DESC, id DESC LIMIT %s", (size,)
        )
    else:
        await cur.execute(
            "SELECT * FROM lotteries WHERE (created_at, id) < (%s, %s) "
            "ORDER BY created_at DESC, id DESC LIMIT %s",
            (after[0], after[1], size),
        )
    rows = await cur.fetchall()
    await cur.execute(
        f"SELECT lottery_id, {_PRIZE_COLUMNS} FROM lottery_prizes "
        "WHERE lottery_id = ANY(%s) ORDER BY lottery_id, position",
        ([r["id"] for r in rows],),
    )
    prizes: dict[str, list[Prize]] = {}
    for p in await cur.fetchall():
        prizes.setdefault(str(p["lottery_id"]), []).append(_prize(p))
    return [_lottery(r, prizes.get(str(r["id"]), [])) for r in rows]


async def lotteries_to_watch(conn: AsyncConnection[Any]) -> list[str]:
    """Lotteries whose draws may still be held: open, or ended within the last hour."""
    cur = await conn.execute(
        "SELECT id::text FROM lotteries WHERE starts_at <= now() + interval '1 minute' "
        "AND ends_at > now() - interval '1 hour' ORDER BY id"
    )
    return [r[0] for r in await cur.fetchall()]


async def member_counts(
    conn: AsyncConnection[Any], lottery_id: str, day: str
) -> list[tuple[str, int, int]]:
    """(member id, draws in total, draws on `day`) of every member who drew."""
    cur = await conn.execute(
        "SELECT member_id::text, draws_total, CASE WHEN day = %s::date THEN draws_day ELSE 0 END "
        "FROM lottery_members WHERE lottery_id = %s",
        (day, lottery_id),
    )
    return [(r[0], int(r[1]), int(r[2])) for r in await cur.fetchall()]


async def draw_by_key(
    conn: AsyncConnection[Any], member_id: str, idempotency_key: str
) -> tuple[Draw, str] | None:
    """A member's draw by its key, with its request fingerprint."""
    return await _draw(
        conn, "d.member_id = %s AND d.idempotency_key = %s", member_id, idempotency_key
    )


async def draw_by_id(conn: AsyncConnection[Any], member_id: str, draw_id: str) -> Draw | None:
    found = await _draw(conn, "d.member_id = %s AND d.id = %s", member_id, draw_id)
    return found[0] if found else None


async def _draw(conn: AsyncConnection[Any], where: str, *args: str) -> tuple[Draw, str] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT d.id, d.lottery_id, d.member_id, d.cost_points, d.redemption_id, "
        "d.idempotency_key, d.request_hash, d.created_at, "
        + ", ".join(f"p.{c} AS p_{c}" for c in _PRIZE_COLUMNS.split(", "))
        + f" FROM lottery_draws d JOIN lottery_prizes p ON p.id = d.prize_id WHERE {where}",
        args,
    )
    row = await cur.fetchone()
    if row is None:
        return None
    prize = _prize({c: row["p_" + c] for c in _PRIZE_COLUMNS.split(", ")})
    draw = Draw(
        id=str(row["id"]),
        lottery_id=str(row["lottery_id"]),
        member_id=str(row["member_id"]),
        prize=prize,
        cost_points=int(row["cost_points"]),
        redemption_id=str(row["redemption_id"]) if row["redemption_id"] else None,
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
    )
    return draw, str(row["request_hash"])


def _prize(row: dict[str, Any]) -> Prize:
    return Prize(
        id=str(row["id"]),
        position=int(row["position"]),
        name=row["name"],
        kind=PrizeKind(row["kind"]),
        item_id=str(row["item_id"]) if row["item_id"] else None,
        campaign_id=str(row["campaign_id"]) if row["campaign_id"] else None,
        weight=int(row["weight"]),
        stock=row["stock"],
        awarded=int(row["awarded"]),
    )


def _lottery(row: dict[str, Any], prizes: list[Prize]) -> Lottery:
    return Lottery(
        id=str(row["id"]),
        name=row["name"],
        cost_points=int(row["cost_points"]),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        per_member_daily=int(row["per_member_daily"]),
        per_member_total=int(row["per_member_total"]),
        prizes=tuple(prizes),
    )
