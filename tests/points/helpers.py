"""Shared steps for ledger tests: a server with a given program, the ledger's invariants
checked member by member, and direct PostgreSQL edits that move lots in time."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from loyalty.v1 import member_pb2
from points.gate import member_keys
from points.program import Program
from tests.conftest import Running, StartServer
from tests.factories import key


async def start_with_program(
    start_server: StartServer, program: Program, **overrides: Any
) -> Running:
    running = await start_server(program=program, **overrides)
    # These tests run the ledger jobs themselves, at the instants they choose: the server's
    # background pass (real clock, tier run claimed for the day) must not race them.
    await running.app.ledger_jobs.stop()
    return running


def program(**changes: Any) -> Program:
    return replace(Program(), **changes)


@dataclass(frozen=True)
class Ledger:
    balance: int
    held: int
    debt: int
    entries: int  # sum of amounts
    debt_changes: int
    lots: int  # sum of remainders
    negative_lots: int
    version: int
    redis_spendable: int | None
    redis_held: int | None
    redis_version: int | None
    redis_frozen: int | None
    redis_eligible: int | None


async def ledger_of(running: Running, member_id: str) -> Ledger:
    async with running.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT m.points_balance, m.points_held, m.points_debt, m.version, "
            "(SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE member_id = m.id), "
            "(SELECT coalesce(sum(debt_change), 0) FROM ledger_entries WHERE member_id = m.id), "
            "(SELECT coalesce(sum(remaining), 0) FROM point_lots WHERE member_id = m.id), "
            "(SELECT count(*) FROM point_lots WHERE member_id = m.id AND remaining < 0) "
            "FROM members m WHERE m.id = %s",
            (member_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    state = await running.app.redis.hgetall(member_keys(member_id)[0])
    s = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in state.items()}
    return Ledger(
        balance=row[0],
        held=row[1],
        debt=row[2],
        version=row[3],
        entries=int(row[4]),
        debt_changes=int(row[5]),
        lots=int(row[6]),
        negative_lots=int(row[7]),
        redis_spendable=s.get("spendable"),
        redis_held=s.get("held"),
        redis_version=s.get("ver"),
        redis_frozen=s.get("frozen"),
        redis_eligible=s.get("eligible"),
    )


async def assert_ledger_holds(running: Running, member_id: str) -> Ledger:
    """balance = sum of entries = sum of lot remainders (debt apart, = sum of debt changes),
    never negative; with no redemption in flight, Redis available = balance - held."""
    ledger = await ledger_of(running, member_id)
    assert ledger.balance == ledger.entries == ledger.lots, ledger
    assert ledger.debt == ledger.debt_changes >= 0, ledger
    assert ledger.balance >= 0 and ledger.negative_lots == 0, ledger
    assert ledger.held <= ledger.balance, ledger
    assert ledger.redis_version == ledger.version, ledger
    assert ledger.redis_held == 0, ledger
    assert ledger.redis_spendable == ledger.balance - ledger.held, ledger
    return ledger


async def set_lot_expiry(running: Running, member_id: str, reference: str, at: datetime) -> None:
    async with running.app.pool.connection() as conn:
        await conn.execute(
            "UPDATE point_lots SET expires_at = %s WHERE member_id = %s AND reference = %s",
            (at, member_id, reference),
        )


async def lots_of(running: Running, member_id: str) -> list[tuple[str, int, int, datetime | None]]:
    """(reference, amount, remaining, expires_at), soonest expiry first."""
    async with running.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT reference, amount, remaining, expires_at FROM point_lots "
            "WHERE member_id = %s ORDER BY expires_at NULLS LAST, id",
            (member_id,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()]


async def earn(running: Running, member_id: str, points: int, idem: str | None = None) -> str:
    """A generic earn; returns its key (its lot's reference is earn:KEY)."""
    idem = idem or key()
    await running.api.members.EarnPoints(
        member_pb2.EarnPointsRequest(
            member_id=member_id, points=points, reason="test", idempotency_key=idem
        )
    )
    return idem
