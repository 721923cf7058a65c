"""PostgreSQL side of member cards: reads and writes, no rules (cards/cards.py has them).
Every state change is a conditional UPDATE on a locked row: it names the states it may
leave, so a change out of order updates nothing."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from cards import numbers
from cards.model import Card, CardBatch, CardState, CardType

Conn = AsyncConnection[Any]

ISSUE_TIMEOUT_MS = 60_000
_COPY_CHUNK = 10_000  # rows per write: text COPY, a few hundred kB each

_TYPE = "code, name, coalesce(default_tier, '') AS default_tier, prefix, next_serial, created_at"
_BATCH = (
    "id::text, card_type, request_id, last_serial - first_serial + 1 AS count, "
    "first_number, last_number, created_at"
)
_CARD = "number, card_type, batch_id::text, state, member_id::text, opened_at, lost_at"


def _type(row: dict[str, Any]) -> CardType:
    return CardType(
        code=row["code"],
        name=row["name"],
        default_tier=row["default_tier"],
        prefix=row["prefix"],
        issued=row["next_serial"],
        created_at=row["created_at"],
    )


def _batch(row: dict[str, Any], *, replayed: bool = False) -> CardBatch:
    return CardBatch(
        id=row["id"],
        card_type=row["card_type"],
        request_id=row["request_id"],
        count=int(row["count"]),
        first_number=row["first_number"],
        last_number=row["last_number"],
        created_at=row["created_at"],
        replayed=replayed,
    )


def _card(row: dict[str, Any]) -> Card:
    return Card(
        number=row["number"],
        card_type=row["card_type"],
        batch_id=row["batch_id"],
        state=CardState(row["state"]),
        member_id=row["member_id"] or "",
        opened_at=row["opened_at"],
        lost_at=row["lost_at"],
    )


async def lock_types(conn: Conn) -> None:
    """Serialises card type creation: a prefix is checked against every other one."""
    await conn.execute("LOCK TABLE card_types IN SHARE ROW EXCLUSIVE MODE")


async def clashing_prefix(conn: Conn, prefix: str) -> str | None:
    """An existing prefix equal to, starting, or started by `prefix`: their numbers could
    be the same."""
    cur = await conn.execute(
        "SELECT prefix FROM card_types WHERE starts_with(prefix, %s) OR starts_with(%s, prefix) "
        "LIMIT 1",
        (prefix, prefix),
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def insert_type(
    conn: Conn, *, code: str, name: str, default_tier: str, prefix: str, created_by: str
) -> CardType:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "INSERT INTO card_types (code, name, default_tier, prefix, created_by) "
        f"VALUES (%s, %s, nullif(%s, ''), %s, %s) RETURNING {_TYPE}",
        (code, name, default_tier, prefix, created_by),
    )
    row = await cur.fetchone()
    assert row is not None
    return _type(row)


async def card_type(conn: Conn, code: str, *, lock: bool = False) -> CardType | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_TYPE} FROM card_types WHERE code = %s{' FOR UPDATE' if lock else ''}", (code,)
    )
    row = await cur.fetchone()
    return None if row is None else _type(row)


async def batch_by_request(conn: Conn, request_id: str) -> CardBatch | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_BATCH} FROM card_batches WHERE request_id = %s", (request_id,))
    row = await cur.fetchone()
    return None if row is None else _batch(row, replayed=True)


async def batch(conn: Conn, batch_id: str) -> CardBatch | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_BATCH} FROM card_batches WHERE id = %s", (batch_id,))
    row = await cur.fetchone()
    return None if row is None else _batch(row)


async def insert_batch(
    conn: Conn, *, kind: CardType, request_id: str, count: int, created_by: str
) -> CardBatch:
    """The batch's row, the type's sequence advanced, and every card of it in one COPY. The
    caller holds the type's row lock, so batches of one type never interleave; the cards'
    PRIMARY KEY would refuse an overlap anyway."""
    first, last = kind.issued, kind.issued + count - 1
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "INSERT INTO card_batches (card_type, request_id, first_serial, last_serial, "
        "first_number, last_number, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        f"RETURNING {_BATCH}",
        (
            kind.code,
            request_id,
            first,
            last,
            numbers.number(kind.prefix, first),
            numbers.number(kind.prefix, last),
            created_by,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    made = _batch(row)
    await conn.execute(
        "UPDATE card_types SET next_serial = %s WHERE code = %s", (last + 1, kind.code)
    )
    # An operator's batch of up to 100,000 rows outlasts the pool's statement_timeout (the
    # commit fence, sized for redemptions); this transaction alone may take longer. It holds
    # only its card type's row lock, which nothing on the redemption path takes.
    await conn.execute(f"SET LOCAL statement_timeout = {ISSUE_TIMEOUT_MS}")
    async with cur.copy("COPY cards (number, card_type, batch_id) FROM STDIN") as copy:
        for start in range(first, last + 1, _COPY_CHUNK):
            end = min(start + _COPY_CHUNK, last + 1)
            rows = "".join(
                f"{numbers.number(kind.prefix, s)}\t{kind.code}\t{made.id}\n"
                for s in range(start, end)
            )
            await copy.write(rows.encode())
    return made


async def batch_numbers(conn: Conn, batch_id: str, after: str, limit: int) -> list[str]:
    cur = await conn.execute(
        "SELECT number FROM cards WHERE batch_id = %s AND number > %s ORDER BY number LIMIT %s",
        (batch_id, after, limit),
    )
    return [str(r[0]) for r in await cur.fetchall()]


async def card(conn: Conn, number: str, *, lock: bool = False) -> Card | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_CARD} FROM cards WHERE number = %s{' FOR UPDATE' if lock else ''}", (number,)
    )
    row = await cur.fetchone()
    return None if row is None else _card(row)


async def lock_cards(conn: Conn, *card_numbers: str) -> dict[str, Card]:
    """Locks the cards in number order (the order every card change takes them in)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_CARD} FROM cards WHERE number = ANY(%s) ORDER BY number FOR UPDATE",
        (sorted(set(card_numbers)),),
    )
    return {row["number"]: _card(row) for row in await cur.fetchall()}


async def first_issued(conn: Conn, card_type: str) -> str | None:
    """The type's lowest issued card not locked by another change, locked."""
    cur = await conn.execute(
        "SELECT number FROM cards WHERE card_type = %s AND state = 'ISSUED' "
        "ORDER BY number LIMIT 1 FOR UPDATE SKIP LOCKED",
        (card_type,),
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def set_state(
    conn: Conn,
    number: str,
    *,
    leaving: tuple[CardState, ...],
    to: CardState,
    sets: str = "",
    params: tuple[Any, ...] = (),
) -> bool:
    """Moves a locked card to `to` if it is in one of `leaving`; False if it was not."""
    extra = f", {sets}" if sets else ""
    cur = await conn.execute(
        f"UPDATE cards SET state = %s{extra} WHERE number = %s AND state = ANY(%s)",
        (str(to), *params, number, [str(s) for s in leaving]),
    )
    return cur.rowcount == 1
