"""Statements: a member's ledger entries (ListLedgerEntries, newest first, filtered and
paged) and, for finance, the liability report (GetLiabilityReport; computed in liability.py).
README.md, "Points ledger": Statements, Liability report."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from common import paging, validation
from common.errors import InvalidArgument
from points import liability, store
from points.context import Context
from points.model import LEDGER_KINDS, LedgerEntry, LedgerPage

_ENTRY_COLUMNS = (
    "id::text, member_id::text, kind, amount, balance_after, debt_change, debt_after, "
    "reference, reason, operator_id, counterparty_id::text, created_at, seq, actor, "
    "earn_rule_ids"
)


class Statements:
    def __init__(self, ctx: Context) -> None:
        self._pool = ctx.pool

    async def entries(
        self,
        *,
        member_id: str,
        page_size: int,
        page_token: str,
        kinds: Sequence[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> LedgerPage:
        """The member's statement, newest first: kinds and [start, end) filter it."""
        member_id = validation.uuid_id("member_id", member_id)
        size = paging.page_size(page_size)
        after = paging.decode(page_token)
        for kind in kinds:
            if kind not in LEDGER_KINDS:
                raise InvalidArgument("kinds", f"unknown kind {kind!r}")
        if start is not None and end is not None and end <= start:
            raise InvalidArgument("end_time", "must be after start_time")
        where, params = ["member_id = %s"], [member_id]
        if kinds:
            where.append("kind = ANY(%s)")
            params.append(list(kinds))  # type: ignore[arg-type]
        if start is not None:
            where.append("created_at >= %s")
            params.append(start)  # type: ignore[arg-type]
        if end is not None:
            where.append("created_at < %s")
            params.append(end)  # type: ignore[arg-type]
        if after is not None:
            try:
                seq = int(after[1])
            except ValueError:
                raise InvalidArgument("page_token", "is not a token this service issued") from None
            where.append("seq < %s")
            params.append(seq)  # type: ignore[arg-type]
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await store.require_member(cur, member_id)
            await cur.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries WHERE {' AND '.join(where)} "
                "ORDER BY seq DESC LIMIT %s",
                (*params, size + 1),
            )
            rows = await cur.fetchall()
        page = rows[:size]
        token = (
            paging.encode(page[-1]["created_at"], str(page[-1]["seq"])) if len(rows) > size else ""
        )
        return LedgerPage([_entry(r) for r in page], token)

    async def liability_report(
        self,
        *,
        start: datetime,
        end: datetime,
        granularity: str = "month",
        now: datetime | None = None,
    ) -> liability.LiabilityReport:
        return await liability.liability_report(
            self._pool, start=start, end=end, granularity=granularity, now=now
        )


def _entry(row: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        id=row["id"],
        member_id=row["member_id"],
        kind=row["kind"],
        amount=row["amount"],
        balance_after=row["balance_after"],
        debt_change=row["debt_change"],
        debt_after=row["debt_after"],
        reference=row["reference"],
        reason=row["reason"],
        operator_id=row["operator_id"],
        counterparty_id=row["counterparty_id"],
        created_at=row["created_at"],
        actor=row["actor"],
        earn_rule_ids=tuple(row["earn_rule_ids"]),
    )
