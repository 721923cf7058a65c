"""What the ledger's use cases share besides SQL: the stores and program they run with,
the members whose Redis mirror a transaction changed, and the checks and wording of
operator input."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from psycopg_pool import AsyncConnectionPool

from common import validation
from points import store
from points.gate import MemberMirror, PointsGate
from points.program import Program
from points.store import Cursor


@dataclass(frozen=True)
class Context:
    """What every use case runs with: PostgreSQL (the truth), the members' side of the Redis
    gate (mirrored after each commit) and the program's settings."""

    pool: AsyncConnectionPool
    gate: PointsGate
    program: Program


@dataclass
class Changed:
    """Members whose mirror changed in a transaction, settled into Redis after it commits."""

    mirrors: dict[str, MemberMirror] = field(default_factory=dict)

    async def read(self, cur: Cursor, *member_ids: str) -> None:
        for member_id in member_ids:
            self.mirrors[member_id] = await store.mirror(cur, member_id)

    async def settle(self, gate: PointsGate) -> None:
        """After the commit: best effort, never an error (PointsGate.mirror_committed)."""
        for member_id, mirror in self.mirrors.items():
            await gate.mirror_committed(member_id, mirror)


def reason(value: str) -> str:
    return validation.text("reason", value, max_length=validation.MAX_REASON_LENGTH, required=True)


def operator_id(value: str, *, required: bool) -> str | None:
    text = validation.text(
        "operator_id", value, max_length=validation.MAX_KEY_LENGTH, required=required
    )
    return text or None


def money(cents: int) -> str:
    """Cents as ledger reasons write an amount: 1234 -> "12.34"."""
    return f"{Decimal(cents) / 100:.2f}"
