"""Round trips per redemption on the success path, counted on the wire of the real service.

The target of the performance issue: a redemption makes at most 2 Redis round trips of its
own (the unit hold and the points hold) and no PostgreSQL round trip of its own; the commit
and the Redis settle are shared by the whole batch (group commit).

Every Redis script call of the service goes through the auto-pipeline
(common/autopipeline.py), so calls of different redemptions, and a batch's settle calls,
share round trips. What is counted, in this process, against the real server of
tests/conftest.py:
- Redis: every write of packed commands to a socket (`send_packed_command`) is one round
  trip, however many commands it carries. Each write is decoded (RESP) to name its commands.
  Connection set-up (HELLO, CLIENT ...) is reported apart.
- PostgreSQL: psycopg drives every exchange with the server (execute, BEGIN, COMMIT, ...)
  as a generator through `AsyncConnection.wait()`; one that waits on the socket at least
  once is one round trip (one that ends at once, like the pool's COMMIT of an idle
  autocommit connection, sends nothing). Statements are named from the cursors.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import psycopg
import pytest
from redis.asyncio.connection import AbstractConnection

from tests.conftest import Running, StartServer

CONCURRENT = 100  # redemptions in flight at once (the target is stated for >= 20)
CAMPAIGNS = 4
_SETUP_COMMANDS = {"HELLO", "CLIENT", "AUTH", "SELECT", "PING"}

_statement: contextvars.ContextVar[str] = contextvars.ContextVar("statement", default="")


def _script_names() -> dict[str, str]:
    """sha1 -> file name of every Lua script of the gate, to name EVALSHA calls."""
    names = {}
    for package in ("flashsale", "points"):
        for f in (resources.files(package) / "lua").iterdir():
            if f.name.endswith(".lua"):
                names[hashlib.sha1(f.read_bytes()).hexdigest()] = f.name
    return names


def _resp_commands(data: bytes) -> list[list[bytes]]:
    """Decodes the RESP arrays of bulk strings that redis-py writes (one per command)."""
    commands, i = [], 0
    while i < len(data):
        if data[i : i + 1] != b"*":
            raise ValueError(f"not a RESP array at byte {i}: {data[i : i + 20]!r}")
        end = data.index(b"\r\n", i)
        count, i = int(data[i + 1 : end]), end + 2
        args = []
        for _ in range(count):
            end = data.index(b"\r\n", i)
            size = int(data[i + 1 : end])
            args.append(data[end + 2 : end + 2 + size])
            i = end + 2 + size + 2
        commands.append(args)
    return commands


@dataclass
class WireCounts:
    scripts: dict[str, str]
    counting: bool = False
    # Redis
    trips: Counter[str] = field(default_factory=Counter)  # by what a write carried
    commands: Counter[str] = field(default_factory=Counter)  # by command (script) name
    setup_trips: Counter[str] = field(default_factory=Counter)
    # PostgreSQL
    pg_trips: Counter[str] = field(default_factory=Counter)  # by statement (first words)

    def name(self, command: list[bytes]) -> str:
        verb = command[0].decode().upper()
        if verb == "EVALSHA" and len(command) > 1:
            return "EVALSHA " + self.scripts.get(command[1].decode(), command[1].decode()[:8])
        if verb in ("SCRIPT", "CLIENT") and len(command) > 1:
            return verb + " " + command[1].decode().upper()
        return verb

    def redis_trip(self, packed: Any) -> None:
        if not self.counting:
            return
        if isinstance(packed, str):
            packed = packed.encode()
        data = packed if isinstance(packed, bytes) else b"".join(bytes(c) for c in packed)
        commands = [self.name(c) for c in _resp_commands(data)]
        if all(c.split()[0] in _SETUP_COMMANDS for c in commands):
            self.setup_trips[" + ".join(commands)] += 1
            return
        self.trips["pipelined" if len(commands) > 1 else commands[0]] += 1
        self.commands.update(commands)

    @property
    def redis(self) -> int:
        return sum(self.trips.values())

    @property
    def pg(self) -> int:
        return sum(self.pg_trips.values())


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Iterator[WireCounts]:
    counts = WireCounts(_script_names())

    send = AbstractConnection.send_packed_command

    async def send_packed_command(self: AbstractConnection, command: Any, *a: Any, **k: Any) -> Any:
        counts.redis_trip(command)
        return await send(self, command, *a, **k)

    wait = psycopg.AsyncConnection.wait

    def counted(gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
        try:
            first = next(gen)
        except StopIteration as done:
            return done.value  # finished without waiting on the server: no round trip
        if counts.counting:
            counts.pg_trips[_statement.get() or "(begin/commit/rollback/other)"] += 1
        sent = yield first
        while True:
            try:
                value = gen.send(sent)
            except StopIteration as done:
                return done.value
            sent = yield value

    async def pg_wait(
        self: psycopg.AsyncConnection[Any], gen: Generator[Any, Any, Any], *a: Any, **k: Any
    ) -> Any:
        return await wait(self, counted(gen), *a, **k)

    cursor_execute = psycopg.AsyncCursor.execute

    async def named_execute(self: psycopg.AsyncCursor[Any], query: Any, *a: Any, **k: Any) -> Any:
        text = query if isinstance(query, str) else repr(query)
        token = _statement.set(" ".join(text.split()[:4]))
        try:
            return await cursor_execute(self, query, *a, **k)
        finally:
            _statement.reset(token)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", send_packed_command)
    monkeypatch.setattr(psycopg.AsyncConnection, "wait", pg_wait)
    monkeypatch.setattr(psycopg.AsyncCursor, "execute", named_execute)
    yield counts


async def _redeem_all(
    running: Running, members: list[str], campaigns: list[str], key: Callable[[int], str]
) -> None:
    results = await asyncio.gather(
        *(
            running.api.redeem(m, campaigns[i % len(campaigns)], idem=key(i))
            for i, m in enumerate(members)
        ),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    assert not failed, failed[:3]


async def test_success_path_round_trips_per_redemption(
    start_server: StartServer, wire: WireCounts
) -> None:
    # No sweep inside the measured window: it runs once at start, then in a minute...
    running = await start_server(sweep_interval_seconds=60.0)
    # Nor the dependency probe's SELECT 1 each second (its own connection, not a redemption's).
    await running.app.probe.stop()
    # Nor the event stream's listener, woken by each batch's NOTIFY (one LISTEN connection
    # per process, not a redemption's round trip: the NOTIFY rides on the commit's own).
    await running.app.event_stream.wakeups.stop()
    api = running.api
    campaigns = [
        (await api.campaign(units=10_000, limit=1_000, points_price=10)).id
        for _ in range(CAMPAIGNS)
    ]
    members = [(await api.member(points=1_000_000)).id for _ in range(CONCURRENT)]

    # Warm-up at the same concurrency: campaign metadata cached, Redis and PostgreSQL
    # connections opened, prepared statements made. Not counted.
    await _redeem_all(running, members, campaigns, lambda i: f"warm-{i}")

    committer = running.app.committer
    batches_before = committer.batches
    wire.counting = True
    await _redeem_all(running, members, campaigns, lambda i: f"measured-{i}")
    wire.counting = False
    n = len(members)
    batches = committer.batches - batches_before

    report = (
        f"\n{n} concurrent success-path redemptions, {batches} group-commit batches\n"
        f"Redis round trips: {wire.redis} ({wire.redis / n:.2f}/redemption) {dict(wire.trips)}"
        f", carrying {dict(wire.commands)}\n"
        f"Redis connection set-up round trips (not counted): {dict(wire.setup_trips)}\n"
        f"PostgreSQL round trips: {wire.pg} ({wire.pg / n:.3f}/redemption) {dict(wire.pg_trips)}"
    )
    print(report)

    # Every check runs, so a failure names all the targets missed, not just the first.
    checks = {
        "at least one group-commit batch": batches >= 1,
        # At most 2 Redis round trips per redemption, all in: its unit hold and points hold
        # and its share of the settle.
        "Redis round trips <= 2 per redemption, settle included": wire.redis <= 2 * n,
        # Each redemption's own calls, whatever shares their round trips: one unit hold, the
        # key's binding on the member's slot (sent with the unit hold) and one points hold;
        # the settle is one resolve per campaign per batch and one points settle per
        # redemption; nothing else.
        "request path: one reserve, one claim and one hold per redemption": (
            wire.commands["EVALSHA reserve.lua"] == n
            and wire.commands["EVALSHA claim.lua"] == n
            and wire.commands["EVALSHA hold.lua"] == n
        ),
        "settle: one resolve per campaign per batch": (
            wire.commands["EVALSHA resolve.lua"] <= batches * CAMPAIGNS
        ),
        "settle: one points settle per redemption": wire.commands["EVALSHA settle.lua"] == n,
        "no other Redis command": set(wire.commands)
        <= {
            "EVALSHA reserve.lua",
            "EVALSHA claim.lua",
            "EVALSHA hold.lua",
            "EVALSHA resolve.lua",
            "EVALSHA settle.lua",
        },
        # No PostgreSQL round trip of its own: the commits are shared through group commit.
        "PostgreSQL round trips per redemption < 1": wire.pg / n < 1,
        "PostgreSQL: one round trip per batch, nothing else": wire.pg <= batches,
    }
    missed = [name for name, ok in checks.items() if not ok]
    assert not missed, f"targets missed: {missed}{report}"
