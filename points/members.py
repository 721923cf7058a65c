"""Members and the points ledger in PostgreSQL, mirrored into the Redis gate on every change.

The ledger is append-only: a member's points_balance always equals the sum of the member's
ledger entries, and every change to the balance writes its entry in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from common import validation
from common.errors import AlreadyExists, IdempotencyKeyReused, NotFound
from points.gate import MemberMirror, PointsGate


@dataclass(frozen=True)
class Member:
    id: str
    display_name: str
    external_ref: str | None
    frozen: bool
    created_at: datetime


@dataclass(frozen=True)
class Balance:
    member_id: str
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True)
class Earned:
    ledger_entry_id: str
    balance: Balance
    replayed: bool


_MEMBER_COLUMNS = "id::text, display_name, external_ref, frozen, created_at"


class Members:
    def __init__(self, pool: AsyncConnectionPool, gate: PointsGate) -> None:
        self._pool = pool
        self._gate = gate

    async def create(self, *, display_name: str, external_ref: str | None) -> Member:
        display_name = validation.text(
            "display_name", display_name, max_length=validation.MAX_NAME_LENGTH, required=True
        )
        if external_ref is not None:
            external_ref = (
                validation.text(
                    "external_ref",
                    external_ref,
                    max_length=validation.MAX_KEY_LENGTH,
                    required=False,
                )
                or None
            )
        async with self._pool.connection() as conn:
            try:
                cur = await conn.cursor(row_factory=dict_row).execute(
                    f"INSERT INTO members (display_name, external_ref) VALUES (%s, %s) "
                    f"RETURNING {_MEMBER_COLUMNS}, version",
                    (display_name, external_ref),
                )
            except psycopg.errors.UniqueViolation as e:
                raise AlreadyExists("member", "external_ref", external_ref or "") from e
            row = await cur.fetchone()
        assert row is not None
        await self._gate.settle(row["id"], mirror=MemberMirror(0, row["version"], False))
        return _member(row)

    async def get(self, member_id: str) -> Member:
        member_id = validation.uuid_id("member_id", member_id)
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"SELECT {_MEMBER_COLUMNS} FROM members WHERE id = %s", (member_id,)
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound("member", member_id)
        return _member(row)

    async def earn(
        self, *, member_id: str, points: int, reason: str, idempotency_key: str
    ) -> Earned:
        member_id = validation.uuid_id("member_id", member_id)
        validation.int_range("points", points, minimum=1, maximum=10**12)
        reason = validation.text(
            "reason", reason, max_length=validation.MAX_REASON_LENGTH, required=True
        )
        key = validation.idempotency_key("idempotency_key", idempotency_key)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            # The member row lock serialises earns of one member, so a key is checked once.
            await cur.execute(
                "SELECT points_balance, points_held, version, frozen FROM members "
                "WHERE id = %s FOR UPDATE",
                (member_id,),
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound("member", member_id)
            await cur.execute(
                "SELECT id::text, amount, reason FROM ledger_entries "
                "WHERE member_id = %s AND idempotency_key = %s",
                (member_id, key),
            )
            previous = await cur.fetchone()
            if previous is not None:
                if previous["amount"] != points or previous["reason"] != reason:
                    raise IdempotencyKeyReused(key)
                entry_id, replayed = previous["id"], True
            else:
                await cur.execute(
                    "UPDATE members SET points_balance = points_balance + %s, "
                    "version = version + 1 WHERE id = %s "
                    "RETURNING points_balance, points_held, version, frozen",
                    (points, member_id),
                )
                row = await cur.fetchone()
                assert row is not None
                await cur.execute(
                    "INSERT INTO ledger_entries (member_id, kind, amount, balance_after, "
                    "reference, reason, idempotency_key) "
                    "VALUES (%s, 'earn', %s, %s, %s, %s, %s) RETURNING id::text",
                    (member_id, points, row["points_balance"], f"earn:{key}", reason, key),
                )
                inserted = await cur.fetchone()
                assert inserted is not None
                entry_id, replayed = inserted["id"], False
        assert row is not None
        await self._gate.settle(member_id, mirror=_mirror(row))
        return Earned(entry_id, await self.balance(member_id), replayed)

    async def balance(self, member_id: str) -> Balance:
        member_id = validation.uuid_id("member_id", member_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT points_balance, points_held FROM members WHERE id = %s", (member_id,)
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound("member", member_id)
        in_flight = await self._gate.held(member_id)
        return Balance(member_id, balance=row[0], held=row[1] + in_flight)

    async def mirror(self, member_id: str) -> MemberMirror | None:
        """The member's PostgreSQL state as Redis mirrors it; None if there is no such member."""
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                "SELECT points_balance, points_held, version, frozen FROM members WHERE id = %s",
                (member_id,),
            )
            row = await cur.fetchone()
        return None if row is None else _mirror(row)

    async def load_into_gate(self, member_id: str) -> bool:
        """Loads the member into Redis if absent (or refreshes an older mirror)."""
        mirror = await self.mirror(member_id)
        if mirror is None:
            return False
        self._gate.count_load()
        await self._gate.settle(member_id, mirror=mirror)
        return True


def _mirror(row: dict[str, object]) -> MemberMirror:
    balance, held, version = row["points_balance"], row["points_held"], row["version"]
    assert isinstance(balance, int) and isinstance(held, int) and isinstance(version, int)
    return MemberMirror(spendable=balance - held, version=version, frozen=bool(row["frozen"]))


def _member(row: dict[str, object]) -> Member:
    return Member(
        id=str(row["id"]),
        display_name=str(row["display_name"]),
        external_ref=row["external_ref"] if isinstance(row["external_ref"], str) else None,
        frozen=bool(row["frozen"]),
        created_at=row["created_at"],  # type: ignore[arg-type]
    )
