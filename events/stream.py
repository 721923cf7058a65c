"""The event stream of one process: watchers (WatchEvents, `surge events tail`) replay and
follow the outbox through events.feed, woken by the shared listener (events.wakeups) and
polling when it is quiet; the leader prunes past retention (events.retention).

Watchers read on a small pool of their own (POOL_SIZE connections), so 1,000 consumers
never take a connection from the redemption path; each read holds one only for its query.
Memory per watcher is one page (page_size rows) at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from datetime import timedelta

from psycopg_pool import AsyncConnectionPool, PoolClosed

from common.intervals import wait_or_stop
from common.metrics import Metrics
from events import feed, retention
from events.errors import StreamStopping
from events.wakeups import Wakeups

log = logging.getLogger(__name__)

POOL_SIZE = 4
# A gap first seen is read again this soon: most gaps are rolled-back writes (or a fresh
# sequence), known to be nobody's as soon as the transactions running when seen end.
_GAP_RECHECK_S = 0.02


class EventStream:
    def __init__(
        self,
        database_url: str,
        *,
        metrics: Metrics,
        retention: timedelta,
        poll_s: float = 1.0,
        page_size: int = 500,
        prune_interval_s: float = 60.0,
    ) -> None:
        self._metrics = metrics
        self.retention = retention
        self.poll_s = poll_s
        self.page_size = page_size
        self._prune_interval_s = prune_interval_s
        self.pool = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True},
            open=False,
        )
        self.wakeups = Wakeups(database_url)
        self._stopping = asyncio.Event()
        self._pruner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping.clear()
        await self.pool.open(wait=True, timeout=30)
        self.wakeups.start()

    async def close(self) -> None:
        """Ends every watch (StreamStopping, UNAVAILABLE: clients resume on another server),
        the pruning job and the listener; closes the pool."""
        self._stopping.set()
        await self.stop_pruning()
        await self.wakeups.stop()
        await self.pool.close()

    async def watch(
        self, after_sequence: int, types: list[str] | tuple[str, ...]
    ) -> AsyncGenerator[feed.Event, None]:
        """Events after `after_sequence` of the wanted types (all when empty), in sequence
        order, replayed then followed until the consumer goes (the generator is closed) or
        the process stops. Arguments are checked before anything is read."""
        cursor = feed.Cursor(feed.after_sequence(after_sequence))
        wanted = feed.event_types(types)
        self._metrics.events_watchers.inc()
        try:
            while True:
                if self._stopping.is_set():
                    raise StreamStopping()
                ticket = self.wakeups.ticket()
                try:
                    async with self.pool.connection() as conn:
                        page = await feed.read_page(conn, cursor, wanted, self.page_size)
                except PoolClosed:
                    raise StreamStopping() from None  # closed while this one was waking
                for event in page.events:
                    yield event
                if page.full:
                    continue
                wait = _GAP_RECHECK_S if page.gap_seen else self.poll_s
                await self.wakeups.wait(ticket, wait)
        finally:
            self._metrics.events_watchers.dec()

    async def prune_once(self) -> int:
        async with self.pool.connection() as conn:
            deleted = await retention.prune(conn, self.retention)
        if deleted:
            log.info("events: pruned %d older than %s", deleted, self.retention)
        return deleted

    def start_pruning(self) -> None:
        """On the leader only (server/app.py), like the ledger jobs."""
        if self._pruner is None:
            self._pruner = asyncio.create_task(self._prune_loop(), name="events-prune")

    async def stop_pruning(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None

    async def _prune_loop(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception:  # a failed pass is retried at the next one
                log.exception("events: pruning failed")
            if await wait_or_stop(self._stopping, self._prune_interval_s):
                return
