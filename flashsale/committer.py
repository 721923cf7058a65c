"""Group commit: redemptions waiting to be committed share one PostgreSQL statement and one
fsync. While a batch is being committed the next one gathers. A worker that picks up an
entry while other redemptions are still being admitted (holding in Redis) waits up to the
linger (SURGE_COMMIT_LINGER_MS) for them; with nobody on the way it commits at once, so a
lone redemption never waits.

Each batch runs commit_redemptions() (flashsale/sql/commit_redemptions.sql) on an autocommit connection
(one round trip; the pool's statement_timeout, the commit fence, bounds it), then hands the
results to `after_commit` (which settles the Redis holds) before any caller is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from common.errors import CommitQueueFull, Unavailable
from common.metrics import Metrics
from flashsale.gate import CampaignMirror
from points.gate import MemberMirror
from points.program import ExpiryPolicy

log = logging.getLogger(__name__)
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


@dataclass(frozen=True)
class CommitEntry:
    id: str
    member_id: str
    campaign_id: str
    quantity: int
    points_total: int
    cash_total_cents: int
    idempotency_key: str
    request_hash: str
    shipping_address: dict[str, str] | None
    redemption_code: str | None
    requested_at: datetime
    # The latest moment PostgreSQL may accept the entry: the hold's deadline less the
    # commit fence, so the sweeper never releases a hold whose commit is still running.
    fence: datetime
    payment_due_at: datetime | None
    # The price's origin (flashsale/pricing.py): the units' list price, and the rule that
    # set points_total when one did.
    list_points_total: int | None = None
    price_rule_id: str | None = None

    def as_json(self, ord_: int) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies, and this runs for every entry.
        due = self.payment_due_at
        return {
            "ord": ord_,
            "id": self.id,
            "member_id": self.member_id,
            "campaign_id": self.campaign_id,
            "quantity": self.quantity,
            "points_total": self.points_total,
            "cash_total_cents": self.cash_total_cents,
            "idempotency_key": self.idempotency_key,
            "request_hash": self.request_hash,
            "shipping_address": self.shipping_address,
            "redemption_code": self.redemption_code,
            "requested_at": self.requested_at.isoformat(),
            "fence": self.fence.isoformat(),
            "payment_due_at": due.isoformat() if due is not None else None,
            "list_points_total": self.list_points_total,
            "price_rule_id": self.price_rule_id,
        }


@dataclass(frozen=True)
class CommitResult:
    outcome: str
    redemption_id: str | None
    request_hash: str | None
    campaign: CampaignMirror | None
    member: MemberMirror | None
    # The code an accepted entry was given: the entry's own (generated) or, for an item
    # whose codes come from a pool, the one commit_redemptions() took from it.
    redemption_code: str | None = None
    # The points the entry is given back (its campaign's points_back_percent of its points,
    # decided by commit_redemptions() from the locked campaign row; 0 when refused).
    points_back: int = 0


# Outcomes that are business refusals: PostgreSQL's guards said no (Redis was behind).
REFUSALS = frozenset(
    {
        "SOLD_OUT",
        "LIMIT_EXCEEDED",
        "INSUFFICIENT_POINTS",
        "MEMBER_FROZEN",
        "CAMPAIGN_NOT_ACTIVE",
        "BELOW_REDEMPTION_THRESHOLD",
    }
)

# The refusals a key keeps (its record answers them again on a retry). CAMPAIGN_NOT_ACTIVE
# is not one: the window changes with time, so a gateway may send a key before the sale
# opens and retry it once it has (reserve.lua does not save it either).
SAVED_REFUSALS = REFUSALS - {"CAMPAIGN_NOT_ACTIVE"}

AfterCommit = Callable[[list[tuple[CommitEntry, CommitResult]]], Awaitable[None]]


@dataclass
class _Waiting:
    entry: CommitEntry
    future: asyncio.Future[CommitResult]


class GroupCommitter:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        after_commit: AfterCommit,
        max_batch: int,
        workers: int,
        metrics: Metrics,
        linger_s: float = 0.0,
        max_waiting: int = 2048,
        points_expiry: ExpiryPolicy | None = None,
    ) -> None:
        self._pool = pool
        # When a points-back lot posted by a batch expires (the program's policy; None:
        # never, as the SQL takes a missing expiry).
        self._points_expiry = points_expiry
        self._metrics = metrics
        self._after_commit = after_commit
        self._max_batch = max_batch
        self._workers = workers
        self._linger_s = linger_s
        self._approaching = 0  # redemptions being admitted: entries on their way here
        self._waiting = 0  # submitted, not yet answered (queued or being committed)
        self._max_waiting = max_waiting
        self._queue: asyncio.Queue[_Waiting | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.batches = 0  # committed batches, for tests and metrics

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name=f"commit-{i}") for i in range(self._workers)
        ]

    @contextlib.contextmanager
    def approaching(self) -> Iterator[None]:
        """Marks a redemption on its way to `submit` (holding in Redis): a worker about to
        commit waits up to the linger for it, and does not wait when nobody is coming.
        Refuses it (CommitQueueFull) before it holds anything when the queue is full: a
        hold that cannot be committed in time only lapses and must be swept back."""
        if self._waiting + self._approaching >= self._max_waiting:
            raise CommitQueueFull(self._max_waiting)
        self._approaching += 1
        try:
            yield
        finally:
            self._approaching -= 1

    async def submit(self, entry: CommitEntry) -> CommitResult:
        if self._closing:
            raise Unavailable("the server is shutting down")
        waiting = _Waiting(entry, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(waiting)
        self._waiting += 1  # until its batch is done, even if its caller stops waiting
        return await waiting.future

    async def close(self) -> None:
        """Stops taking entries, commits everything queued, then returns."""
        self._closing = True
        for _ in self._tasks:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._tasks)

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            if (
                self._linger_s > 0
                and self._approaching > 0
                and self._queue.qsize() < self._max_batch - 1
            ):
                # A batch costs PostgreSQL a fixed ~1 ms plus a little per entry, and the
                # settle a round trip: when more entries are on their way, waiting a moment
                # for them is cheaper than committing without them (docs/performance.md).
                await asyncio.sleep(self._linger_s)
            batch = [first]
            stop = False
            while len(batch) < self._max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            await self._commit_batch(batch)
            if stop:
                return

    async def _commit_batch(self, batch: list[_Waiting]) -> None:
        try:
            await self._commit_and_settle(batch)
        finally:
            self._waiting -= len(batch)

    async def _commit_and_settle(self, batch: list[_Waiting]) -> None:
        self._metrics.commit_batch_size.observe(len(batch))
        try:
            with self._metrics.commit_seconds.time():
                results = await self._commit([w.entry for w in batch])
        except psycopg.OperationalError as e:
            log.warning("commit batch of %d failed: %s", len(batch), e)
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(Unavailable("postgresql"))
            return
        except Exception as e:  # a bug: fail these callers loudly, keep serving the rest
            log.exception("commit batch of %d failed", len(batch))
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(e)
            return
        self.batches += 1
        pairs = [(w.entry, r) for w, r in zip(batch, results, strict=True)]
        try:
            await self._after_commit(pairs)
        except Exception:
            # The batch is durable; the sweeper settles any hold left in Redis.
            log.exception("settling Redis holds after a commit failed")
        for w, r in zip(batch, results, strict=True):
            if not w.future.done():
                w.future.set_result(r)

    async def _commit(self, entries: list[CommitEntry]) -> list[CommitResult]:
        expires = self._points_expiry.expires_at(datetime.now(UTC)) if self._points_expiry else None
        back_expiry = expires.isoformat() if expires is not None else None
        payload = Jsonb(
            [e.as_json(i) | {"points_back_expires_at": back_expiry} for i, e in enumerate(entries)]
        )
        by_ord = await run_batch(self._pool, "commit_redemptions", payload)
        return [_result(by_ord[i]) for i in range(len(entries))]


async def run_batch(
    pool: AsyncConnectionPool, function: str, payload: Jsonb
) -> dict[int, dict[str, Any]]:
    """One group-commit statement (`function` is a set-returning SQL function taking the
    batch as JSON, answering a row per entry with its `ord`), retried up to 3 times on a
    lock conflict; the rows by `ord`. Redemptions and lottery draws share it."""
    for attempt in range(3):
        try:
            async with pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(f"SELECT * FROM {function}(%s)", (payload,))
                rows = await cur.fetchall()
            break
        except _RETRYABLE:
            if attempt == 2:
                raise
            log.warning("%s batch retried after a lock conflict", function)
    return {row["ord"]: row for row in rows}


def _result(row: dict[str, Any]) -> CommitResult:
    campaign = member = None
    if row["campaign_version"] is not None:
        campaign = CampaignMirror(
            row["campaign_taken"],
            row["campaign_version"],
            row["member_units"],
            row["member_units_version"],
        )
    if row["member_version"] is not None:
        member = MemberMirror(row["member_spendable"], row["member_version"], row["member_frozen"])
    rid = row["redemption_id"]
    return CommitResult(
        row["outcome"],
        str(rid) if rid else None,
        row["request_hash"],
        campaign,
        member,
        row["redemption_code"],
        row["points_back"] or 0,
    )
