"""One LISTEN connection per process, fanned out to every watcher: a NOTIFY on
'surge_events' (events/sql/events.sql, sent when a transaction that wrote events commits)
wakes every stream to read the table again. Only a hint: a missed or late notification
costs a poll interval, never an event, because the table is always the source.

1,000 watchers share this one connection (not one each). A watcher takes a ticket before it
reads and waits on that ticket after, so a notification that arrives while it reads is not
lost. While the connection is down the listener reconnects every second and the watchers
poll; each reconnection wakes everyone (notifications meanwhile were missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

from common.intervals import wait_or_stop

log = logging.getLogger(__name__)

CHANNEL = "surge_events"


class Wakeups:
    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._event = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.listening = False  # for tests and readiness of the wake-up path

    def ticket(self) -> asyncio.Event:
        return self._event

    async def wait(self, ticket: asyncio.Event, timeout_s: float) -> None:
        """Until a notification after `ticket` was taken, or timeout_s (the poll)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ticket.wait(), timeout_s)

    def wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._listen(), name="events-listener")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.wake()  # watchers see the stop at once

    async def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    self.wake()  # whatever was written while nobody listened
                    async for _ in conn.notifies():
                        self.wake()
            except (psycopg.Error, OSError) as e:
                log.warning("events listener: %s; watchers poll until it is back", type(e).__name__)
            finally:
                self.listening = False
            if await wait_or_stop(self._stopping, 1.0):
                return
