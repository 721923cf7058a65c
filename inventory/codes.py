"""Virtual code pools: the codes a POOL item's redemptions are given (migration 0011,
table item_codes).

A code's life: AVAILABLE (loaded) -> ISSUED (taken by commit_redemptions() in the
redemption's own commit, flashsale/sql/commit_redemptions.sql) -> CONSUMED (a merchant used
it, once) or REVOKED (its redemption was cancelled before that: never issued again, the
member may have seen it).

- Import: the upload is checked line by line; a bad line is rejected with its reason (EMPTY,
  TOO_LONG, NOT_PRINTABLE, DUPLICATE_IN_FILE, ALREADY_LOADED) and the rest are loaded, in
  one transaction written in bounded batches (IMPORT_BATCH rows a statement), under the
  item's row lock (two uploads to one item run one after the other). Loaded codes are added
  to the item's stock on hand: a pool item's stock is its codes, so a campaign allots them
  as it allots any stock. The operator change is audited (who, counts; never the codes).
- A campaign may not promise more codes than the pool has: `check_promise` (called by
  campaign creation and updates, under the item's lock) is the Redis gate's bound, so a
  surge on an empty pool is refused SOLD_OUT in Redis; PostgreSQL's commit refuses the rest.
- Consume is idempotent by (request_id, merchant_id): the same request again answers the
  same; another request for a consumed code is ALREADY_CONSUMED. It writes code.consumed
  in its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

import auditlog
from common import actor, validation
from common.errors import InvalidArgument, NotFound
from events import EventType, append
from inventory import stock
from inventory.errors import (
    CodeAlreadyConsumed,
    CodeConsumed,
    CodeNotIssued,
    CodePoolTooSmall,
    CodeRevoked,
    NotAPoolItem,
)
from inventory.stock import MovementKind

MAX_CODE_LENGTH = 128
MAX_CODES_PER_UPLOAD = 100_000  # bounds the upload's memory and its one transaction
IMPORT_BATCH = 1_000  # rows per INSERT: bounded statements, few round trips
MAX_REJECTED_SHOWN = 100  # rejected lines listed in the answer (all are counted)


class CodeStatus(StrEnum):
    AVAILABLE = "AVAILABLE"
    ISSUED = "ISSUED"
    CONSUMED = "CONSUMED"
    REVOKED = "REVOKED"


class RejectReason(StrEnum):
    EMPTY = "EMPTY"
    TOO_LONG = "TOO_LONG"
    NOT_PRINTABLE = "NOT_PRINTABLE"
    DUPLICATE_IN_FILE = "DUPLICATE_IN_FILE"
    ALREADY_LOADED = "ALREADY_LOADED"


@dataclass(frozen=True)
class Rejected:
    line: int  # 1-based position in the upload
    reason: RejectReason


@dataclass(frozen=True)
class Imported:
    item_id: str
    loaded: int
    rejected: int
    remaining: int  # codes available after the upload
    rejected_lines: list[Rejected]  # the first MAX_REJECTED_SHOWN


@dataclass(frozen=True)
class CodePool:
    item_id: str
    loaded: int
    available: int
    issued: int
    consumed: int
    revoked: int


@dataclass(frozen=True)
class CodeInfo:
    item_id: str
    code: str
    status: CodeStatus
    redemption_id: str | None
    member_id: str | None
    issued_at: datetime | None
    consumed_at: datetime | None
    merchant_id: str | None

    @property
    def consumable(self) -> bool:
        return self.status is CodeStatus.ISSUED


@dataclass(frozen=True)
class Consumed:
    code: CodeInfo
    replayed: bool


def reject_reason(code: str) -> RejectReason | None:
    """Why a line cannot be a code, or None. Printable: no whitespace, no control or
    unassigned characters (str.isprintable is False for all of them but the space)."""
    if code == "":
        return RejectReason.EMPTY
    if len(code) > MAX_CODE_LENGTH:
        return RejectReason.TOO_LONG
    if not code.isprintable() or any(ch.isspace() for ch in code):
        return RejectReason.NOT_PRINTABLE
    return None


_INFO = (
    "SELECT ic.item_id::text, ic.code, ic.status, ic.redemption_id::text, r.member_id::text, "
    "ic.issued_at, ic.consumed_at, ic.merchant_id, ic.consume_request_id "
    "FROM item_codes ic LEFT JOIN redemptions r ON r.id = ic.redemption_id "
    "WHERE ic.item_id = %s AND ic.code = %s"
)


class CodePools:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def import_codes(self, item_id: str, codes: Sequence[str]) -> Imported:
        item_id = validation.uuid_id("item_id", item_id)
        if len(codes) > MAX_CODES_PER_UPLOAD:
            raise InvalidArgument("codes", f"at most {MAX_CODES_PER_UPLOAD} codes an upload")
        rejected: list[Rejected] = []
        first_line: dict[str, int] = {}  # code -> its line, first occurrence wins
        for line, code in enumerate(codes, start=1):
            reason = reject_reason(code)
            if reason is None and code in first_line:
                reason = RejectReason.DUPLICATE_IN_FILE
            if reason is not None:
                rejected.append(Rejected(line, reason))
            else:
                first_line[code] = line
        fresh = list(first_line)
        loaded = 0
        async with self._pool.connection() as conn, conn.transaction():
            await _lock_pool_item(conn, item_id)
            for start in range(0, len(fresh), IMPORT_BATCH):
                chunk = fresh[start : start + IMPORT_BATCH]
                cur = await conn.execute(
                    "INSERT INTO item_codes (item_id, code) SELECT %s, c FROM unnest(%s::text[]) c "
                    "ON CONFLICT (item_id, code) DO NOTHING RETURNING code",
                    (item_id, chunk),
                )
                inserted = {row[0] for row in await cur.fetchall()}
                loaded += len(inserted)
                rejected += [
                    Rejected(first_line[c], RejectReason.ALREADY_LOADED)
                    for c in chunk
                    if c not in inserted
                ]
            # A pool item's stock is its codes: what is loaded can be allotted.
            if loaded:
                await stock.add(
                    conn, item_id, MovementKind.RECEIVED, loaded, reason="codes imported"
                )
            await auditlog.record(
                conn,
                auditlog.IMPORT_CODES,
                target_kind=auditlog.ITEM,
                target_id=item_id,
                content={"item_id": item_id, "loaded": loaded, "rejected": len(rejected)},
            )
            remaining = (await _counts(conn, item_id)).available
        rejected.sort(key=lambda r: r.line)
        return Imported(item_id, loaded, len(rejected), remaining, rejected[:MAX_REJECTED_SHOWN])

    async def get_pool(self, item_id: str) -> CodePool:
        item_id = validation.uuid_id("item_id", item_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT code_source FROM items WHERE id = %s", (item_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound("item", item_id)
            if row[0] != "POOL":
                raise NotAPoolItem(item_id)
            return await _counts(conn, item_id)

    async def available_by_item(self) -> dict[str, int]:
        """Codes available per pool item that has a campaign not yet ended: the label set
        of surge_code_pool_available (bounded by the pool items on sale)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT i.id::text, (SELECT count(*) FROM item_codes ic "
                "WHERE ic.item_id = i.id AND ic.status = 'AVAILABLE') "
                "FROM items i WHERE i.code_source = 'POOL' AND EXISTS "
                "(SELECT 1 FROM campaigns c WHERE c.item_id = i.id AND c.ends_at > now())"
            )
            return {row[0]: int(row[1]) for row in await cur.fetchall()}

    async def verify(self, item_id: str, code: str) -> CodeInfo:
        item_id = validation.uuid_id("item_id", item_id)
        code = _code("code", code)
        async with self._pool.connection() as conn:
            row = await (
                await conn.cursor(row_factory=dict_row).execute(_INFO, (item_id, code))
            ).fetchone()
        if row is None:
            raise NotFound("code of item", item_id)  # the code itself is not echoed back
        return _info(row)

    async def consume(
        self, *, item_id: str, code: str, request_id: str, merchant_id: str
    ) -> Consumed:
        item_id = validation.uuid_id("item_id", item_id)
        code = _code("code", code)
        request_id = validation.idempotency_key("request_id", request_id)
        merchant_id = validation.idempotency_key("merchant_id", merchant_id)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_INFO + " FOR UPDATE OF ic", (item_id, code))
            row = await cur.fetchone()
            if row is None:
                raise NotFound("code of item", item_id)
            status = CodeStatus(row["status"])
            if status is CodeStatus.CONSUMED:
                if (row["consume_request_id"], row["merchant_id"]) == (request_id, merchant_id):
                    return Consumed(_info(row), replayed=True)
                raise CodeAlreadyConsumed(item_id, row["consumed_at"].isoformat())
            if status is CodeStatus.AVAILABLE:
                raise CodeNotIssued(item_id)
            if status is CodeStatus.REVOKED:
                raise CodeRevoked(item_id)
            await cur.execute(
                "UPDATE item_codes SET status = 'CONSUMED', consumed_at = now(), "
                "merchant_id = %s, consume_request_id = %s WHERE item_id = %s AND code = %s",
                (merchant_id, request_id, item_id, code),
            )
            await cur.execute(_INFO, (item_id, code))
            after = await cur.fetchone()
            assert after is not None
            info = _info(after)
            await append(
                conn,
                EventType.CODE_CONSUMED,
                "redemption",
                str(info.redemption_id),
                {
                    "item_id": item_id,
                    "redemption_id": info.redemption_id,
                    "member_id": info.member_id,
                    "merchant_id": merchant_id,
                    "request_id": request_id,
                    "consumed_at": after["consumed_at"].isoformat(),
                },
                actor=actor.current().subject,
            )
        return Consumed(info, replayed=False)


# -- Used by other domains in their own transactions --------------------------------------


async def check_promise(
    conn: AsyncConnection[Any],
    item_id: str,
    *,
    field: str,
    units: int,
    other_than_campaign: str | None = None,
) -> None:
    """For a pool item: refuses (CodePoolTooSmall, naming `field`) a campaign that would
    have `units` unsold when the pool's available codes, less the unsold units of the
    item's other campaigns not yet ended, are fewer. A no-op for a GENERATED item. The
    caller holds the item's row lock (imports take it too)."""
    cur = await conn.execute(
        "SELECT i.code_source = 'POOL', "
        "(SELECT count(*) FROM item_codes ic WHERE ic.item_id = i.id AND ic.status = 'AVAILABLE') "
        "- (SELECT coalesce(sum(c.units_allotted - c.units_committed - c.units_held), 0) "
        "FROM campaigns c WHERE c.item_id = i.id AND c.ends_at > now() "
        "AND c.id IS DISTINCT FROM %s::uuid) FROM items i WHERE i.id = %s",
        (other_than_campaign, item_id),
    )
    row = await cur.fetchone()
    if row is None or not row[0]:
        return
    if units > row[1]:
        raise CodePoolTooSmall(item_id, field, max(0, int(row[1])), units)


async def revoke_for_cancel(conn: AsyncConnection[Any], redemption_id: str) -> None:
    """In a cancel's transaction: revokes the redemption's pool code, if it has one that is
    unconsumed; refuses (CodeConsumed) if a merchant consumed it. The UPDATE waits for a
    consume in flight and re-reads the row, so the two never both succeed."""
    cur = await conn.execute(
        "UPDATE item_codes SET status = 'REVOKED', revoked_at = now() "
        "WHERE redemption_id = %s AND status = 'ISSUED' RETURNING id",
        (redemption_id,),
    )
    if await cur.fetchone() is not None:
        return
    cur = await conn.execute(
        "SELECT status FROM item_codes WHERE redemption_id = %s", (redemption_id,)
    )
    row = await cur.fetchone()
    if row is not None and row[0] == CodeStatus.CONSUMED.value:
        raise CodeConsumed(redemption_id)


async def _lock_pool_item(conn: AsyncConnection[Any], item_id: str) -> None:
    cur = await conn.execute("SELECT code_source FROM items WHERE id = %s FOR UPDATE", (item_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("item", item_id)
    if row[0] != "POOL":
        raise NotAPoolItem(item_id)


async def _counts(conn: AsyncConnection[Any], item_id: str) -> CodePool:
    cur = await conn.execute(
        "SELECT status, count(*) FROM item_codes WHERE item_id = %s GROUP BY status", (item_id,)
    )
    by = {status: int(n) for status, n in await cur.fetchall()}
    return CodePool(
        item_id=item_id,
        loaded=sum(by.values()),
        available=by.get("AVAILABLE", 0),
        issued=by.get("ISSUED", 0),
        consumed=by.get("CONSUMED", 0),
        revoked=by.get("REVOKED", 0),
    )


def _code(field: str, code: str) -> str:
    if reject_reason(code) is not None:
        raise InvalidArgument(
            field, f"must be 1..{MAX_CODE_LENGTH} printable characters without whitespace"
        )
    return code


def _info(row: dict[str, Any]) -> CodeInfo:
    return CodeInfo(
        item_id=row["item_id"],
        code=row["code"],
        status=CodeStatus(row["status"]),
        redemption_id=row["redemption_id"],
        member_id=row["member_id"],
        issued_at=row["issued_at"],
        consumed_at=row["consumed_at"],
        merchant_id=row["merchant_id"],
    )
