"""Leadership: which of the server processes sharing one PostgreSQL runs the cluster-wide
background jobs (the sweeper's hold settling and payment expiry, the ledger jobs).

The leader is the process holding a PostgreSQL session-level advisory lock, `LOCK_KEY`, taken
with `pg_try_advisory_lock` on a connection of its own (not from the pool: a pooled
connection is handed to others and reset, and the lock belongs to the session that took it),
kept open for as long as the process leads. Every `interval_s` (the sweep interval):

- a follower tries to take the lock (connecting first if it has no connection);
- the leader checks its connection (`SELECT 1`, bounded by `interval_s`): if the check
  fails, it steps down at once and closes the connection.

When the leader dies its connection drops and PostgreSQL releases the lock; a follower takes
it at its next try, so within two intervals at most. A leader whose network fails steps
down at its next check; PostgreSQL notices the dead session by TCP keepalives, set short on
this connection (`_KEEPALIVES`: about 20 s), and releases the lock then. Between the two
(a leader that has not noticed yet while another has the lock, for at most one interval),
two processes may run the jobs at once: they are idempotent, as they have always been.

Advisory locks are per database: processes on one PostgreSQL database share one leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable

import psycopg

from common.intervals import wait_or_stop
from common.metrics import Metrics

log = logging.getLogger(__name__)

# The advisory lock key, fixed and documented (README, docs/design.md): the bytes of "surge"
# read as a bigint. Another application on the same database must not use it.
LOCK_KEY = int.from_bytes(b"surge", "big")  # 495891539813
# The lock connection's server-side TCP keepalives: a session whose client vanished without
# closing (network failure, host lost) is dropped after about 10 + 5 x 2 seconds.
_KEEPALIVES = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=2"


class Leadership:
    def __init__(
        self,
        database_url: str,
        *,
        interval_s: float,
        metrics: Metrics,
        on_change: Callable[[bool], Awaitable[None]],
    ) -> None:
        self._url = database_url
        self._interval_s = interval_s
        self._metrics = metrics
        self._on_change = on_change
        self._conn: psycopg.AsyncConnection | None = None
        self._leading = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def leading(self) -> bool:
        return self._leading

    async def start(self) -> None:
        """Tries once (so a lone process leads before it serves), then every interval."""
        self._stopping.clear()
        self._metrics.leader.set(0)
        await self.check()
        self._task = asyncio.create_task(self._loop(), name="leadership")

    async def stop(self) -> None:
        """Ends the loop, steps down (its jobs stop) and closes the connection: the lock is
        free for another process at once."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self._step_down("stopping")

    async def check(self) -> bool:
        """One step: a leader checks its connection, a follower tries to take the lock."""
        timeout = max(self._interval_s, 1.0)
        try:
            if self._leading:
                assert self._conn is not None
                await asyncio.wait_for(self._conn.execute("SELECT 1"), timeout)
                return True
            if self._conn is None or self._conn.closed:
                self._conn = await asyncio.wait_for(
                    psycopg.AsyncConnection.connect(
                        self._url,
                        autocommit=True,
                        options=_KEEPALIVES,
                        application_name="surge-leader",
                    ),
                    timeout,
                )
            cur = await asyncio.wait_for(
                self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)), timeout
            )
            row = await cur.fetchone()
        except (psycopg.Error, OSError, TimeoutError) as e:
            await self._step_down(f"lock connection lost: {type(e).__name__}")
            return False
        if row is not None and row[0]:
            self._leading = True
            self._metrics.leader.set(1)
            log.info("leader: %s runs the background jobs (advisory lock %d)", self.name, LOCK_KEY)
            await self._on_change(True)
        return self._leading

    async def _step_down(self, why: str) -> None:
        """Closing the connection releases the lock if PostgreSQL still holds it for us."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), max(self._interval_s, 1.0))
        if self._leading:
            self._leading = False
            self._metrics.leader.set(0)
            log.info("leader: %s no longer leads (%s)", self.name, why)
            await self._on_change(False)

    async def _loop(self) -> None:
        while not await wait_or_stop(self._stopping, self._interval_s):
            try:
                await self.check()
            except Exception:
                log.exception("leadership check failed; next in %.1fs", self._interval_s)
