"""Physical counts (issue 20 item 5): what a location really holds, reconciled with the
ledger (SubmitStockCount, `surge stock count`).

Per line: expected = what should be on the shelf: the location's on_hand plus the units
sold from it that have not left yet (a physical item's redemptions COMMITTED or PACKING:
the ledger takes a unit off on_hand at its commit, the warehouse at shipping). A difference
is written as one `counted` movement (stock_move, reference 'count:<id>'). Outcomes:
- MATCHED: nothing to write; ADJUSTED: the movement is written;
- UNKNOWN_SKU: no such item (reported, not fatal);
- BELOW_ALLOTTED: fewer units counted than the location has promised (allotted to
  campaigns, or sold and not shipped yet): applying it would make available stock negative
  while units are promised, so it is reported and not applied (someone must look: a loss,
  or a miscount);
- DUPLICATE_SKU: the sku is on more than one line of this count: none of them is applied.
A negative count, an empty sku or too many lines refuses the whole request.

One transaction: an advisory lock on the key (two submits of one key run one after the
other), then the items FOR UPDATE in id order, then their levels at the location (the lock
order every writer uses: item row, then its levels). The key is Stripe-style: the same key
and the same lines answer the saved report (replayed); other lines are
IDEMPOTENCY_KEY_REUSED. A dry run computes the report and writes nothing. The count, its
lines, its stock.counted event and its audit entry commit together."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

import auditlog
import events
from common import actor, validation
from common.errors import IdempotencyKeyReused, InvalidArgument, NotFound
from inventory import locations
from inventory.items import MAX_STOCK

MAX_LINES = 10_000  # bounds the request, its locks and its one transaction
MAX_SKU_LENGTH = 64


class Outcome(StrEnum):
    MATCHED = "MATCHED"
    ADJUSTED = "ADJUSTED"
    UNKNOWN_SKU = "UNKNOWN_SKU"
    BELOW_ALLOTTED = "BELOW_ALLOTTED"
    DUPLICATE_SKU = "DUPLICATE_SKU"


REFUSED = frozenset({Outcome.UNKNOWN_SKU, Outcome.BELOW_ALLOTTED, Outcome.DUPLICATE_SKU})


@dataclass(frozen=True)
class CountLine:
    line: int  # 1-based position in the count
    sku: str
    item_id: str | None
    counted: int
    expected: int  # on the shelf: on_hand + sold not yet shipped (0 for an unknown sku)
    allotted: int  # of which promised: allotted to campaigns, or sold not yet shipped
    outcome: Outcome

    @property
    def difference(self) -> int:
        return 0 if self.item_id is None else self.counted - self.expected


@dataclass(frozen=True)
class CountReport:
    count_id: str  # "" for a dry run
    location_id: str
    location_code: str
    lines: list[CountLine]
    dry_run: bool = False
    replayed: bool = False
    counted_at: datetime | None = None
    actor: str = ""

    def number(self, outcome: Outcome) -> int:
        return sum(1 for line in self.lines if line.outcome is outcome)

    @property
    def units_added(self) -> int:
        return sum(max(0, ln.difference) for ln in self.lines if ln.outcome is Outcome.ADJUSTED)

    @property
    def units_removed(self) -> int:
        return sum(max(0, -ln.difference) for ln in self.lines if ln.outcome is Outcome.ADJUSTED)

    @property
    def refused(self) -> int:
        return sum(1 for line in self.lines if line.outcome in REFUSED)

    def summary(self) -> dict[str, Any]:
        return {
            "count_id": self.count_id,
            "location_id": self.location_id,
            "location_code": self.location_code,
            "lines": len(self.lines),
            **{o.value.lower(): self.number(o) for o in Outcome},
            "units_added": self.units_added,
            "units_removed": self.units_removed,
        }


def check_lines(lines: Sequence[tuple[str, int]]) -> None:
    """Refuses the whole count (InvalidArgument naming lines[i].<field>) for a bad line."""
    if not lines:
        raise InvalidArgument("lines", "must have at least one line")
    if len(lines) > MAX_LINES:
        raise InvalidArgument("lines", f"at most {MAX_LINES} lines a count")
    for i, (sku, counted) in enumerate(lines):
        if not sku or len(sku) > MAX_SKU_LENGTH or sku != sku.strip():
            raise InvalidArgument(f"lines[{i}].sku", f"must be 1..{MAX_SKU_LENGTH} characters")
        if not sku.isprintable():  # a NUL would be PostgreSQL's error, not the client's
            raise InvalidArgument(f"lines[{i}].sku", "must be printable characters")
        if counted < 0:
            raise InvalidArgument(f"lines[{i}].counted_units", "must not be negative")
        validation.int_range(f"lines[{i}].counted_units", counted, minimum=0, maximum=MAX_STOCK)


class StockCounts:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def submit(
        self,
        *,
        location_code: str,
        lines: Sequence[tuple[str, int]],
        idempotency_key: str,
        dry_run: bool = False,
    ) -> CountReport:
        location_code = locations.valid_code("location_code", location_code)
        check_lines(lines)
        key = "" if dry_run else validation.idempotency_key("idempotency_key", idempotency_key)
        fingerprint = hashlib.sha256(
            json.dumps([location_code, [list(line) for line in lines]]).encode()
        ).hexdigest()
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT id::text FROM locations WHERE code = %s", (location_code,)
            )
            found = await cur.fetchone()
            if found is None:
                raise NotFound("location", location_code)
            location_id = str(found[0])
            if not dry_run:
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended('stock_count:' || %s, 0))",
                    (key,),
                )
                cur = await conn.execute(
                    "SELECT id::text, fingerprint FROM stock_counts WHERE idempotency_key = %s",
                    (key,),
                )
                previous = await cur.fetchone()
                if previous is not None:
                    if previous[1] != fingerprint:
                        raise IdempotencyKeyReused(key)
                    return await _saved(conn, previous[0], replayed=True)
            report_lines = await _reconcile(conn, location_id, lines, lock=not dry_run)
            if dry_run:
                return CountReport("", location_id, location_code, report_lines, dry_run=True)
            return await _apply(conn, location_id, location_code, report_lines, key, fingerprint)

    async def get(self, count_id: str) -> CountReport:
        count_id = validation.uuid_id("count_id", count_id)
        async with self._pool.connection() as conn:
            return await _saved(conn, count_id, replayed=False)


async def _reconcile(
    conn: AsyncConnection[Any], location_id: str, lines: Sequence[tuple[str, int]], *, lock: bool
) -> list[CountLine]:
    """Each line's outcome against the location's levels (locked when it is applied)."""
    times = Counter(sku for sku, _ in lines)
    lock_clause = " FOR UPDATE" if lock else ""
    # Rows are locked as the sorted rows come out: in id order, the same for every count.
    cur = await conn.execute(
        f"SELECT id::text, sku FROM items WHERE sku = ANY(%s) ORDER BY id{lock_clause}",
        (list(times),),
    )
    item_of = {sku: item_id for item_id, sku in await cur.fetchall()}
    cur = await conn.execute(
        "SELECT item_id::text, on_hand, allotted FROM stock_levels "
        f"WHERE location_id = %s AND item_id = ANY(%s::uuid[]) ORDER BY item_id{lock_clause}",
        (location_id, list(item_of.values())),
    )
    level = {row[0]: (int(row[1]), int(row[2])) for row in await cur.fetchall()}
    # Sold from here and still on the shelf: the ledger's redeemed units of redemptions not
    # shipped yet (physical items only: a code never leaves a shelf).
    cur = await conn.execute(
        "SELECT m.item_id::text, -sum(m.on_hand_delta) FROM stock_movements m "
        "JOIN redemptions r ON r.id = m.redemption_id "
        "JOIN items i ON i.id = m.item_id AND i.kind = 'PHYSICAL' "
        "WHERE m.location_id = %s AND m.item_id = ANY(%s::uuid[]) "
        "AND m.kind IN ('redeemed', 'cancelled') AND r.status IN ('COMMITTED', 'PACKING') "
        "GROUP BY m.item_id",
        (location_id, list(item_of.values())),
    )
    unshipped = {row[0]: int(row[1]) for row in await cur.fetchall()}
    report: list[CountLine] = []
    for number, (sku, counted) in enumerate(lines, start=1):
        item_id = item_of.get(sku)
        on_hand, allotted = level.get(item_id or "", (0, 0))
        waiting = unshipped.get(item_id or "", 0)
        on_hand, allotted = on_hand + waiting, allotted + waiting
        if item_id is None:
            outcome = Outcome.UNKNOWN_SKU
        elif times[sku] > 1:
            outcome = Outcome.DUPLICATE_SKU
        elif counted < allotted:
            outcome = Outcome.BELOW_ALLOTTED
        elif counted == on_hand:
            outcome = Outcome.MATCHED
        else:
            outcome = Outcome.ADJUSTED
        report.append(CountLine(number, sku, item_id, counted, on_hand, allotted, outcome))
    return report


async def _apply(
    conn: AsyncConnection[Any],
    location_id: str,
    location_code: str,
    lines: list[CountLine],
    key: str,
    fingerprint: str,
) -> CountReport:
    who = actor.current().subject
    cur = await conn.execute(
        "INSERT INTO stock_counts (location_id, idempotency_key, fingerprint, actor, reason) "
        "VALUES (%s, %s, %s, %s, 'physical count') RETURNING id::text, created_at",
        (location_id, key, fingerprint, who),
    )
    row = await cur.fetchone()
    assert row is not None
    count_id, counted_at = str(row[0]), row[1]
    moves = sorted((ln.item_id, ln.difference) for ln in lines if ln.outcome is Outcome.ADJUSTED)
    if moves:
        # One statement; unnest yields the rows in id order, so the levels are written in
        # the order they were locked.
        await conn.execute(
            "SELECT stock_move(u.item_id, %s, 'counted', u.delta, 0, NULL, NULL, %s, %s, "
            "'physical count') FROM unnest(%s::uuid[], %s::bigint[]) AS u(item_id, delta)",
            (
                location_id,
                f"count:{count_id}",
                who,
                [m[0] for m in moves],
                [m[1] for m in moves],
            ),
        )
    await conn.execute(
        "INSERT INTO stock_count_lines (count_id, line, sku, item_id, counted, expected, "
        "allotted, outcome) SELECT %s::uuid, * FROM unnest(%s::integer[], %s::text[], %s::uuid[], "
        "%s::bigint[], %s::bigint[], %s::bigint[], %s::text[])",
        (
            count_id,
            [ln.line for ln in lines],
            [ln.sku for ln in lines],
            [ln.item_id for ln in lines],
            [ln.counted for ln in lines],
            [ln.expected for ln in lines],
            [ln.allotted for ln in lines],
            [ln.outcome.value for ln in lines],
        ),
    )
    report = CountReport(
        count_id, location_id, location_code, lines, counted_at=counted_at, actor=who
    )
    summary = report.summary()
    await events.append(
        conn,
        events.EventType.STOCK_COUNTED,
        "location",
        location_id,
        summary,
        actor=who,
    )
    await auditlog.record(
        conn,
        auditlog.SUBMIT_STOCK_COUNT,
        target_kind=auditlog.LOCATION,
        target_id=location_id,
        content={**summary, "idempotency_key": key},
    )
    return report


async def _saved(conn: AsyncConnection[Any], count_id: str, *, replayed: bool) -> CountReport:
    cur = await conn.cursor(row_factory=dict_row).execute(
        "SELECT c.id::text, c.location_id::text, l.code, c.created_at, c.actor "
        "FROM stock_counts c JOIN locations l ON l.id = c.location_id WHERE c.id = %s",
        (count_id,),
    )
    head = await cur.fetchone()
    if head is None:
        raise NotFound("stock count", count_id)
    cur = await conn.cursor(row_factory=dict_row).execute(
        "SELECT line, sku, item_id::text, counted, expected, allotted, outcome "
        "FROM stock_count_lines WHERE count_id = %s ORDER BY line",
        (count_id,),
    )
    lines = [
        CountLine(
            r["line"],
            r["sku"],
            r["item_id"],
            int(r["counted"]),
            int(r["expected"]),
            int(r["allotted"]),
            Outcome(r["outcome"]),
        )
        for r in await cur.fetchall()
    ]
    return CountReport(
        head["id"],
        head["location_id"],
        head["code"],
        lines,
        replayed=replayed,
        counted_at=head["created_at"],
        actor=head["actor"] or "",
    )
