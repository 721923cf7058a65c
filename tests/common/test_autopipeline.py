"""The request path's auto-pipeline (common/autopipeline.py) against the real Redis: calls
share round trips, each still gets its own reply or error, and NOSCRIPT and a dead
connection are handled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio
import redis.exceptions
from prometheus_client import CollectorRegistry

from common.autopipeline import AutoPipeline
from common.metrics import Metrics
from loyalty.v1 import redemption_pb2
from server.app import Stores
from tests.conftest import Running
from tests.factories import key

COUNT = """local n = redis.call('INCRBY', KEYS[1], ARGV[1])
return {1, n}"""
FAIL = "return redis.error_reply('NOPE ' .. ARGV[1])"


@pytest.fixture
async def client(clean: Stores) -> Any:
    r = redis.asyncio.Redis.from_url(clean.redis_url)
    yield r
    await r.aclose()


def _pipeline(r: redis.asyncio.Redis) -> tuple[AutoPipeline, list[int]]:
    """An AutoPipeline whose round trips are recorded as their sizes."""
    calls = AutoPipeline(r, metrics=Metrics(CollectorRegistry()))
    sizes: list[int] = []
    round_trip = calls._round_trip

    async def recorded(batch: list[Any]) -> Any:
        sizes.append(len(batch))
        return await round_trip(batch)

    calls._round_trip = recorded  # type: ignore[method-assign,assignment]
    return calls, sizes


async def test_calls_of_one_loop_turn_share_one_round_trip(client: redis.asyncio.Redis) -> None:
    script = client.register_script(COUNT)
    await client.script_load(COUNT)
    calls, sizes = _pipeline(client)

    replies = await asyncio.gather(
        *(calls.call(script, [f"{{n:{i % 3}}}"], [i]) for i in range(50))
    )

    assert sizes == [50]
    # Each call got its own reply, in order per key: key i % 3 counted 0+3+6+... up to i.
    for i, reply in enumerate(replies):
        assert reply == [1, sum(range(i % 3, i + 1, 3))]


async def test_busy_senders_let_calls_gather(client: redis.asyncio.Redis) -> None:
    script = client.register_script(COUNT)
    await client.script_load(COUNT)
    calls, sizes = _pipeline(client)

    async def one_after_another(i: int) -> None:
        for _ in range(20):
            await calls.call(script, [f"{{w:{i}}}"], [1])

    await asyncio.gather(*(one_after_another(i) for i in range(30)))

    assert sum(sizes) == 600
    assert len(sizes) < 600 / 4, sizes  # most round trips carried several calls
    assert [int(await client.get(f"{{w:{i}}}") or 0) for i in range(30)] == [20] * 30


async def test_an_error_reply_fails_only_its_call(client: redis.asyncio.Redis) -> None:
    ok, bad = client.register_script(COUNT), client.register_script(FAIL)
    await client.script_load(COUNT)
    await client.script_load(FAIL)
    calls, sizes = _pipeline(client)

    replies = await asyncio.gather(
        calls.call(ok, ["{e}"], [1]),
        calls.call(bad, ["{e}"], ["x"]),
        calls.call(ok, ["{e}"], [1]),
        return_exceptions=True,
    )

    assert sizes == [3]
    assert replies[0] == [1, 1] and replies[2] == [1, 2]
    assert isinstance(replies[1], redis.exceptions.ResponseError)
    assert "NOPE x" in str(replies[1])


async def test_noscript_loads_the_scripts_and_sends_those_calls_again(
    client: redis.asyncio.Redis,
) -> None:
    script = client.register_script(COUNT)
    calls, sizes = _pipeline(client)
    await client.script_flush()

    replies = await asyncio.gather(*(calls.call(script, ["{s}"], [1]) for _ in range(5)))

    assert sizes == [5, 5]  # all five got NOSCRIPT, none ran; then all five ran once
    assert sorted(r[1] for r in replies) == [1, 2, 3, 4, 5]
    assert int(await client.get("{s}") or 0) == 5


async def test_a_dead_connection_fails_every_call_of_the_batch() -> None:
    dead = redis.asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    script = dead.register_script(COUNT)
    calls, _ = _pipeline(dead)

    replies = await asyncio.gather(
        *(calls.call(script, ["{d}"], [1]) for _ in range(3)), return_exceptions=True
    )

    assert all(isinstance(r, redis.exceptions.ConnectionError) for r in replies), replies
    await dead.aclose()


async def test_a_redemption_succeeds_after_redis_lost_its_scripts(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=10, limit=10, points_price=10)
    member = await api.member(points=1_000)
    await server.app.redis.script_flush()  # e.g. a restart: every gate script is gone

    redeemed = await api.redeem(member.id, campaign.id, idem=key())

    assert redeemed.redemption.status == redemption_pb2.REDEMPTION_STATUS_COMMITTED
    balance = await api.balance(member.id)
    assert (balance.balance, balance.held, balance.available) == (990, 0, 990)


async def test_a_round_trip_past_its_deadline_fails_and_the_next_one_works(
    client: redis.asyncio.Redis,
) -> None:
    script = client.register_script(COUNT)
    await client.script_load(COUNT)
    calls = AutoPipeline(client, metrics=Metrics(CollectorRegistry()), timeout_s=0.3)
    await calls.call(script, ["{t}"], [1])  # a kept connection, now stalled by the pause
    await client.client_pause(1000)

    stalled = await asyncio.gather(
        *(calls.call(script, ["{t}"], [1]) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, redis.exceptions.TimeoutError) for r in stalled), stalled

    await asyncio.sleep(1.0)  # the pause ends
    # Timed-out calls may or may not have run (here their connection was closed before
    # Redis read them); either way the next call works, on a fresh connection.
    reply = await calls.call(script, ["{t}"], [1])
    assert reply[0] == 1 and reply[1] in (2, 5), reply


async def test_a_kept_connection_that_died_idle_is_replaced_without_failing_calls(
    client: redis.asyncio.Redis,
) -> None:
    script = client.register_script(COUNT)
    await client.script_load(COUNT)
    calls = AutoPipeline(client, metrics=Metrics(CollectorRegistry()))
    assert await calls.call(script, ["{k}"], [1]) == [1, 1]  # the connection is now kept
    # Redis drops every other client connection (as a restart or a proxy would).
    await client.client_kill_filter(_type="normal", skipme=True)

    replies = await asyncio.gather(*(calls.call(script, ["{k}"], [1]) for _ in range(3)))

    assert sorted(r[1] for r in replies) == [2, 3, 4]
