"""Group commit of draws: draws waiting to be committed share one commit_draws() statement
(lottery/sql/draws.sql) and one fsync, as redemptions share commit_redemptions()
(flashsale/committer.py, whose shape this follows: while one batch commits the next
gathers; the results are settled in Redis, by `after_commit`, before anyone is answered).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from common.errors import CommitQueueFull, Unavailable
from flashsale.committer import run_batch
from points.gate import MemberMirror

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrawEntry:
    id: str
    lottery_id: str
    member_id: str
    idempotency_key: str
    request_hash: str
    prize_id: str
    cost_points: int
    requested_at: datetime
    # The hold's deadline less the commit fence: the sweeper never releases a draw whose
    # commit may still run.
    fence: datetime
    hold: str
    day: str  # the UTC day Redis counted the draw on (its release names it)
    # A GOOD prize's redemption (stage B): its id, the address (physical), the code (a
    # virtual item's generated code; None for a pool item, whose code the commit takes).
    redemption_id: str | None = None
    shipping_address: dict[str, str] | None = None
    redemption_code: str | None = None

    def as_json(self, ord_: int) -> dict[str, Any]:
        return {
            "ord": ord_,
            "id": self.id,
            "lottery_id": self.lottery_id,
            "member_id": self.member_id,
            "idempotency_key": self.idempotency_key,
            "request_hash": self.request_hash,
            "prize_id": self.prize_id,
            "cost_points": self.cost_points,
            "requested_at": self.requested_at.isoformat(),
            "fence": self.fence.isoformat(),
            "redemption_id": self.redemption_id,
            "shipping_address": self.shipping_address,
            "redemption_code": self.redemption_code,
        }


@dataclass(frozen=True)
class DrawResult:
    outcome: str
    draw_id: str | None
    request_hash: str | None
    prize_id: str | None
    member: MemberMirror | None
    redemption_id: str | None = None


AfterCommit = Callable[[list[tuple[DrawEntry, DrawResult]]], Awaitable[None]]


class DrawCommitter:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        after_commit: AfterCommit,
        max_batch: int,
        workers: int,
        max_waiting: int = 2048,
    ) -> None:
        self._pool = pool
        self._after_commit = after_commit
        self._max_batch = max_batch
        self._workers = workers
        self._max_waiting = max_waiting
        self._queue: asyncio.Queue[tuple[DrawEntry, asyncio.Future[DrawResult]] | None] = (
            asyncio.Queue()
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.batches = 0

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name=f"draw-commit-{i}") for i in range(self._workers)
        ]

    def check_room(self) -> None:
        """Refuses a draw before it holds anything when too many wait for PostgreSQL."""
        if self._queue.qsize() >= self._max_waiting:
            raise CommitQueueFull(self._max_waiting)

    async def submit(self, entry: DrawEntry) -> DrawResult:
        if self._closing:
            raise Unavailable("the server is shutting down")
        future: asyncio.Future[DrawResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((entry, future))
        return await future

    async def close(self) -> None:
        self._closing = True
        for _ in self._tasks:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._tasks)

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            await self._commit_and_settle(batch)
            if stop:
                return

    async def _commit_and_settle(
        self, batch: list[tuple[DrawEntry, asyncio.Future[DrawResult]]]
    ) -> None:
        try:
            results = await self._commit([entry for entry, _ in batch])
        except psycopg.OperationalError as e:
            log.warning("draw commit batch of %d failed: %s", len(batch), e)
            for _, future in batch:
                if not future.done():
                    future.set_exception(Unavailable("postgresql"))
            return
        except Exception as e:  # a bug: fail these callers loudly, keep serving the rest
            log.exception("draw commit batch of %d failed", len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        self.batches += 1
        pairs = [(entry, r) for (entry, _), r in zip(batch, results, strict=True)]
        try:
            await self._after_commit(pairs)
        except Exception:
            # The batch is durable; the sweeper settles any draw left held in Redis.
            log.exception("settling Redis draws after a commit failed")
        for (_, future), r in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(r)

    async def _commit(self, entries: list[DrawEntry]) -> list[DrawResult]:
        payload = Jsonb([e.as_json(i) for i, e in enumerate(entries)])
        by_ord = await run_batch(self._pool, "commit_draws", payload)
        return [_result(by_ord[i]) for i in range(len(entries))]


def _result(row: dict[str, Any]) -> DrawResult:
    member = None
    if row["member_version"] is not None:
        member = MemberMirror(row["member_spendable"], row["member_version"], row["member_frozen"])
    return DrawResult(
        row["outcome"],
        str(row["draw_id"]) if row["draw_id"] else None,
        row["request_hash"],
        str(row["prize_id"]) if row["prize_id"] else None,
        member,
        str(row["redemption_id"]) if row["redemption_id"] else None,
    )
