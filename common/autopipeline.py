"""Auto-pipelining for the service's Lua scripts.

Every redemption makes one `reserve` and one `hold` call, and its batch's settle a `resolve`
and a `settle`. Sent one by one through redis-py, each costs a connection checkout, a
timeout task around the send, a socket write and a read wake-up: about 90 µs of CPU per call
on this 2-core box, against about 15 µs when the same calls share a round trip
(docs/performance.md has the figures).

So a call is queued and a future returned. A batch goes out as soon as a sender is free
(at most MAX_IN_FLIGHT round trips at once, each on a connection the pipeline keeps); while
they are busy, calls gather for the next one. An idle server sends a lone call at the end of
the current loop turn; a busy one sends dozens per round trip. No timer, no added wait.
Connections are kept between round trips rather than checked out of a pool each time, and a
round trip has one deadline (`timeout_s`) rather than one per send and per reply: when
batches are small, those were a third of a refusal's Redis cost. `AutoPipeline.connect`
builds the client of its own that this wants (no socket timeout of redis-py's).

Pipelines are not transactions: each script stays atomic on its own slot, exactly as when
sent alone, so batching changes cost, never semantics.

Errors: a script's error reply fails that call only. NOSCRIPT (Redis restarted or flushed
its script cache) means the script did not run, so those calls are sent again once their
scripts are loaded. A kept connection that fails (it died while idle: a Redis restart) is
replaced and the batch sent once more; a fresh connection that fails, or a missed deadline,
fails every call of the batch whose reply was not read: the caller answers UNAVAILABLE and
the client retries with the same idempotency key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.exceptions
from hiredis import pack_command
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript

from common.metrics import Metrics
from common.redis_client import is_cluster_url

# One round trip at a time: Redis runs scripts one after another anyway, and while one is
# out the next batch gathers. Measured against 2: success path 1,260 -> 1,420/s, because
# batches grew and socket writes (~15 µs each) fell.
MAX_IN_FLIGHT = 1
TIMEOUT_S = 5.0  # redis-py's default socket timeout, here per round trip

_Call = tuple[AsyncScript, tuple[Any, ...], asyncio.Future[Any]]


class AutoPipeline:
    def __init__(self, redis: Redis, *, metrics: Metrics, timeout_s: float = TIMEOUT_S) -> None:
        self._redis = redis
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._queued: list[_Call] = []
        self._flush_scheduled = False
        self._senders: set[asyncio.Task[None]] = set()
        self._idle: list[AbstractConnection] = []  # kept between round trips

    @classmethod
    def connect(cls, url: str, *, metrics: Metrics, timeout_s: float = TIMEOUT_S) -> AutoPipeline:
        """An auto-pipeline on a client of its own: a connection per sender and no socket
        timeout (each round trip's deadline bounds them). A `redis+cluster://` URL gives
        the cluster's (common/autopipeline_cluster.py)."""
        if is_cluster_url(url):
            from common.autopipeline_cluster import ClusterAutoPipeline

            return ClusterAutoPipeline.connect_cluster(url, metrics=metrics, timeout_s=timeout_s)
        pool = ConnectionPool.from_url(url, socket_timeout=None, max_connections=MAX_IN_FLIGHT + 2)
        return cls(Redis.from_pool(pool), metrics=metrics, timeout_s=timeout_s)

    async def aclose(self) -> None:
        self._idle.clear()
        await self._redis.aclose()

    def call(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        """Queues EVALSHA of `script`; returns a future of its reply (awaitable)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((script, ("EVALSHA", script.sha, len(keys), *keys, *args), future))
        if not self._flush_scheduled:
            # At the end of this loop turn, so that calls made in the same turn go together.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._queued or len(self._senders) >= MAX_IN_FLIGHT:
            return  # a sender that finishes flushes again
        calls, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._send(calls))
        self._senders.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._senders.discard(task)
        if self._queued and not self._flush_scheduled:
            self._flush()

    async def _send(self, calls: list[_Call]) -> None:
        self._metrics.redis_pipeline_commands.observe(len(calls))
        try:
            with self._metrics.redis_call("autopipeline"):
                missing = await self._round_trip(calls)
            if missing:
                for script in {id(c[0]): c[0] for c in missing}.values():
                    await self._redis.script_load(script.script)
                await self._round_trip(missing)
        except Exception as e:  # the connection failed: every unanswered call gets the error
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(e)

    async def _round_trip(self, calls: list[_Call]) -> list[_Call]:
        """Sends the calls in one write, answers each; returns the ones that got NOSCRIPT.

        A kept connection may have died while idle (Redis restarted, a proxy closed it):
        if it fails, the calls go once more on a fresh one. Every script here is idempotent
        for its hold (a repeat answers IN_FLIGHT, ALREADY_HELD or the remembered refusal),
        so sending again is safe even if Redis ran some of them."""
        if self._idle:
            try:
                return await self._on(self._idle.pop(), calls)
            except redis.exceptions.ConnectionError:
                pass
        pool = self._redis.connection_pool
        return await self._on(await pool.get_connection(), calls)  # type: ignore[no-untyped-call]

    async def _on(self, conn: AbstractConnection, calls: list[_Call]) -> list[_Call]:
        try:
            async with asyncio.timeout(self._timeout_s):
                missing = await _exchange(conn, calls)
        except BaseException as e:
            # Replies may still be on their way on it: never reuse it.
            await conn.disconnect(nowait=True)
            await self._redis.connection_pool.release(conn)
            if isinstance(e, TimeoutError):
                raise redis.exceptions.TimeoutError("Redis did not answer in time") from e
            raise
        self._idle.append(conn)
        return missing


async def _exchange(conn: AbstractConnection, calls: list[_Call]) -> list[_Call]:
    missing = []
    # hiredis packs in C, ~10x faster than redis-py's Python packer (the same bytes).
    await conn.send_packed_command(b"".join([pack_command(c[1]) for c in calls]))
    for call in calls:
        future = call[2]
        try:
            reply = await conn.read_response()
        except redis.exceptions.NoScriptError:
            missing.append(call)
        except redis.exceptions.ResponseError as e:  # this script failed, not the rest
            if not future.done():
                future.set_exception(e)
        else:
            if not future.done():  # else the caller gave up; the script ran anyway
                future.set_result(reply)
    return missing
