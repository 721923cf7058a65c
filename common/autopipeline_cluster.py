"""The auto-pipeline on a Redis Cluster (`redis+cluster://`): common/autopipeline.py's
batching, per node.

A flushed batch is grouped by the node that owns each call's slot (its first key), and each
node gets its own sender: one round trip in flight per node, on connections kept per node,
nodes concurrently. While a node's round trip is out, its calls gather for the next one.

Redirections and outages never fail a call as a script error:
- `MOVED` (a slot moved, a failover): the slot map is updated for that slot (and refreshed
  in full once per round trip that met one) and the call goes to the new owner.
- `ASK` (a slot being migrated): the call goes to the named node, after `ASKING`.
- `NOSCRIPT` (a promoted replica, SCRIPT FLUSH): the script is loaded on the node that said
  so, in the same round trip as the call sent again.
- `TRYAGAIN`, `CLUSTERDOWN`, a node that refuses connections or drops one: the slot map is
  refreshed, and after a short pause the call is routed and sent again.
Each call has one deadline, `timeout_s` after it was flushed; past it, it fails with the
last error met (a redis error common/dependencies.py maps to UNAVAILABLE) or a TimeoutError.
Sending again is safe: every script is idempotent for its hold (common/autopipeline.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.exceptions
from hiredis import pack_command
from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.crc import key_slot

from common.autopipeline import TIMEOUT_S, AutoPipeline
from common.dependencies import failure_of
from common.metrics import Metrics

RETRY_PAUSE_S = 0.1  # between a TRYAGAIN / CLUSTERDOWN / refused connection and the resend
# Replies that mean "not now, not here": the call is routed and sent again.
_RETRY = (redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)
# A slot map refresh that failed (no node reachable, slots not covered): the old map stays.
_REFRESH_ERRORS = (
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,
    OSError,
    TimeoutError,
)


class _Call:
    __slots__ = ("asking", "deadline", "error", "future", "load", "script", "slot", "words")

    def __init__(self, script: AsyncScript, words: tuple[Any, ...], future: Any) -> None:
        self.script = script
        self.words = words
        self.future: asyncio.Future[Any] = future
        key = words[3] if words[2] else b""
        self.slot = key_slot(key.encode() if isinstance(key, str) else bytes(key))
        self.deadline = 0.0
        self.error: BaseException | None = None  # the last one met, if it must fail
        self.asking: ClusterNode | None = None  # ASK: send once to this node after ASKING
        self.load = False  # NOSCRIPT met: load the script before sending it again


class _Node:
    __slots__ = ("idle", "node", "pending", "sender")

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.pending: list[_Call] = []
        self.sender: asyncio.Task[None] | None = None
        self.idle: list[AbstractConnection] = []


class ClusterAutoPipeline(AutoPipeline):
    """AutoPipeline's interface (`call`, `aclose`) on a RedisCluster."""

    def __init__(
        self, cluster: RedisCluster, *, metrics: Metrics, timeout_s: float = TIMEOUT_S
    ) -> None:
        self._cluster = cluster
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._queued = []
        self._flush_scheduled = False
        self._nodes: dict[str, _Node] = {}
        self._ready = False
        self._waiting: list[_Call] = []  # for a slot map refresh and/or a pause
        self._refresh_wanted = False
        self._retry: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    @classmethod
    def connect_cluster(
        cls, url: str, *, metrics: Metrics, timeout_s: float = TIMEOUT_S
    ) -> ClusterAutoPipeline:
        from common.redis_client import client

        cluster = client(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        assert isinstance(cluster, RedisCluster)
        return cls(cluster, metrics=metrics, timeout_s=timeout_s)

    async def aclose(self) -> None:
        tasks = [self._retry, self._refresher, *(n.sender for n in self._nodes.values())]
        for task in tasks:
            if task is None:
                continue
            task.cancel()
        for node in self._nodes.values():
            for conn in node.idle:
                await conn.disconnect(nowait=True)
            node.idle.clear()
        await self._cluster.aclose()

    def _flush(self) -> None:
        self._flush_scheduled = False
        queued, self._queued = self._queued, []
        deadline = time.monotonic() + self._timeout_s
        calls = []
        for script, words, future in queued:
            call = _Call(script, words, future)
            call.deadline = deadline
            calls.append(call)
        if not self._ready:
            self._wait(calls, refresh=True, pause=False)
        else:
            self._route(calls)

    def _route(self, calls: list[_Call]) -> None:
        manager = self._cluster.nodes_manager
        started = set()
        for call in calls:
            if call.future.done():
                continue  # the caller gave up
            try:
                node = call.asking or manager.get_node_from_slot(call.slot)
            except (redis.exceptions.SlotNotCoveredError, KeyError):
                call.error = redis.exceptions.ClusterDownError(
                    f"CLUSTERDOWN slot {call.slot} is not covered"
                )
                self._wait([call], refresh=True, pause=True)
                continue
            entry = self._nodes.get(node.name)  # by address: one sender per node
            if entry is None:
                entry = self._nodes[node.name] = _Node(node)
            elif entry.node is not node:
                entry.node = node  # the same address, forgotten and found again
            entry.pending.append(call)
            started.add(node.name)
        for name in started:
            entry = self._nodes[name]
            if entry.sender is None:
                entry.sender = asyncio.get_running_loop().create_task(self._sender(entry))

    def _wait(self, calls: list[_Call], *, refresh: bool, pause: bool) -> None:
        """Calls to route again after a slot map refresh and/or a short pause; those past
        their deadline fail with the last error they met."""
        now = time.monotonic()
        for call in calls:
            if call.future.done():
                continue
            if call.deadline <= now:
                _fail(call)
            else:
                self._waiting.append(call)
        self._refresh_wanted |= refresh
        if self._waiting and self._retry is None:
            self._retry = asyncio.get_running_loop().create_task(self._retry_waiting(pause))

    async def _retry_waiting(self, pause: bool) -> None:
        try:
            if pause:
                await asyncio.sleep(RETRY_PAUSE_S)
            if self._refresh_wanted or not self._ready:
                self._refresh_wanted = False
                await self._refresh()
        finally:
            self._retry = None
        calls, self._waiting = self._waiting, []
        if self._ready:
            self._route(calls)
        else:
            self._wait(calls, refresh=True, pause=True)

    async def _refresh(self) -> None:
        latest = max((c.deadline for c in self._waiting), default=0.0)
        try:
            async with asyncio.timeout(max(latest - time.monotonic(), 0.01)):
                if not self._ready:
                    await self._cluster.initialize()
                    self._ready = True
                else:
                    await self._cluster.nodes_manager.initialize()
        except _REFRESH_ERRORS as e:
            for call in self._waiting:
                call.error = call.error or _unavailable(e)

    def _refresh_soon(self) -> None:
        """A refresh of the whole slot map in the background, one at a time."""
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_map())

    async def _refresh_map(self) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._cluster.nodes_manager.initialize()
        except _REFRESH_ERRORS:
            pass  # MOVED replies keep updating the map slot by slot meanwhile
        finally:
            self._refresher = None

    async def _sender(self, entry: _Node) -> None:
        try:
            while entry.pending:
                calls, entry.pending = entry.pending, []
                self._metrics.redis_pipeline_commands.observe(len(calls))
                try:
                    with self._metrics.redis_call("autopipeline"):
                        await self._node_round_trip(entry, calls)
                except Exception as e:  # a bug here must not leave callers waiting
                    for call in calls:
                        if not call.future.done():
                            call.future.set_exception(e)
        finally:
            entry.sender = None

    async def _node_round_trip(self, entry: _Node, calls: list[_Call]) -> None:
        again: list[_Call] = []
        moved: list[_Call] = []
        kept = bool(entry.idle)
        conn = entry.idle.pop() if kept else _connection(entry.node)
        latest = max(c.deadline for c in calls)
        try:
            async with asyncio.timeout(max(latest - time.monotonic(), 0.01)):
                await _exchange(conn, calls, again, moved)
        except BaseException as e:
            await conn.disconnect(nowait=True)
            if isinstance(e, asyncio.CancelledError):
                raise
            rest = [c for c in calls if not c.future.done() and c not in again and c not in moved]
            if isinstance(e, TimeoutError):
                for call in rest:
                    call.future.set_exception(
                        redis.exceptions.TimeoutError("Redis Cluster did not answer in time")
                    )
            elif isinstance(e, (redis.exceptions.ConnectionError, OSError)) and kept:
                entry.pending[:0] = rest  # a kept connection died idle: once more, fresh
            else:
                for call in rest:
                    call.error = _unavailable(e)
                    call.asking = None
                self._wait(rest, refresh=True, pause=True)
        else:
            entry.idle.append(conn)
        if moved:
            manager = self._cluster.nodes_manager
            for call in moved:
                error = call.error
                assert isinstance(error, redis.exceptions.AskError)
                if isinstance(error, redis.exceptions.MovedError):
                    try:
                        await manager.move_slot(error)
                    except KeyError:
                        self._refresh_soon()
                else:
                    call.asking = manager.get_node(host=error.host, port=error.port)
                    if call.asking is None:
                        call.asking = ClusterNode(
                            error.host, error.port, "primary", **manager.connection_kwargs
                        )
            if any(isinstance(c.error, redis.exceptions.MovedError) for c in moved):
                self._refresh_soon()  # the whole map (a failover moved many slots)
            now = time.monotonic()
            for call in moved:
                if call.deadline <= now:
                    _fail(call)
            self._route([c for c in moved if not c.future.done()])
        if again:
            retry = [c for c in again if not c.load]
            entry.pending[:0] = [c for c in again if c.load]  # NOSCRIPT: here, at once
            if retry:
                self._wait(retry, refresh=True, pause=True)


def _connection(node: ClusterNode) -> AbstractConnection:
    """A connection of the pipeline's own to the node, without a socket timeout (each round
    trip's deadline bounds it), kept outside redis-py's pool (a slot map refresh marks the
    pool's connections for reconnection)."""
    kwargs = dict(node.connection_kwargs, socket_timeout=None)
    return node.connection_class(**kwargs)


async def _exchange(
    conn: AbstractConnection, calls: list[_Call], again: list[_Call], moved: list[_Call]
) -> None:
    """One write, then every reply read. Answers the calls that got one; `moved` gets the
    redirected ones, `again` those to send again (NOSCRIPT, TRYAGAIN, CLUSTERDOWN)."""
    words: list[bytes] = []
    loads = {id(c.script): c.script for c in calls if c.load}
    for script in loads.values():
        load: tuple[Any, ...] = ("SCRIPT", "LOAD", script.script)
        words.append(pack_command(load))
    for call in calls:
        if call.asking is not None:
            words.append(pack_command(("ASKING",)))
        words.append(pack_command(call.words))
    await conn.send_packed_command(b"".join(words))
    for _ in loads:
        await conn.read_response()
    for call in calls:
        call.load = False
        if call.asking is not None:
            call.asking = None
            await conn.read_response()  # OK
        try:
            reply = await conn.read_response()
        except redis.exceptions.NoScriptError as e:
            call.load, call.error = True, e
            again.append(call)
        except redis.exceptions.AskError as e:  # MovedError too
            call.error = e
            moved.append(call)
        except _RETRY as e:
            call.error = e
            again.append(call)
        except redis.exceptions.ResponseError as e:  # this script failed, not the rest
            if not call.future.done():
                call.future.set_exception(e)
        else:
            if not call.future.done():
                call.future.set_result(reply)


def _unavailable(e: BaseException) -> BaseException:
    if failure_of(e) is not None:
        return e
    error = redis.exceptions.ConnectionError(f"Redis Cluster unreachable: {e!r}")
    error.__cause__ = e
    return error


def _fail(call: _Call) -> None:
    """The call's deadline passed: it fails with what kept it from being answered."""
    if call.future.done():
        return
    error = call.error
    if error is None or failure_of(error) is None:
        timeout = redis.exceptions.TimeoutError("Redis Cluster did not answer in time")
        timeout.__cause__ = error
        error = timeout
    call.future.set_exception(error)
