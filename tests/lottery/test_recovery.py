"""Stage D: a draw held in Redis whose commit never happened (the server was killed
between the holds and the commit) is given back by the sweeper after its deadline: the
prize's stock, the member's counts and the points hold. One whose commit happened but whose
settle was lost is marked done instead, and its prize stays awarded."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from lottery.draws import fingerprint
from lottery.gate import DrawCode, LotteryKeys, hold_id, utc_day
from tests.conftest import Running
from tests.factories import key
from tests.lottery.helpers import draw, lottery, pg_rows


async def _past_deadline(server: Running) -> None:
    await asyncio.sleep(server.app.settings.hold_ttl_seconds + 0.3)


async def test_a_draw_held_by_a_killed_server_is_released_by_the_sweeper(server: Running) -> None:
    lot = await lottery(server, stock=1, weight=1_000_000, consolation_weight=1, cost=100)
    member = await server.api.member(points=1000)
    await server.app.lotteries.load_into_gate(lot.id)
    idem = key()
    hold = hold_id(member.id, idem)
    # What a server does before the commit, then dies: the prize and the points held.
    held = await server.app.lottery_gate.draw(
        lot.id,
        member.id,
        hold,
        fingerprint=fingerprint(member.id, lot.id, None),
        rand=0,
        hold_ttl_ms=int(server.app.settings.hold_ttl_seconds * 1000),
        now=datetime.now(UTC),
    )
    assert held.code is DrawCode.HELD and int(held.values[1]) == 1  # the good prize
    await server.app.points_gate.hold(
        member.id, hold, 100, deadline_ms=int(held.values[0]), campaign_id=lot.id
    )
    keys = LotteryKeys(lot.id)
    during = await server.app.redis.hget(keys.state, "left1")
    assert (await server.api.balance(member.id)).held == 100

    await _past_deadline(server)
    await server.app.sweeper.sweep_once()

    assert int(during or 0) == 0
    assert int(await server.app.redis.hget(keys.state, "left1") or 0) == 1
    assert await server.app.redis.zcard(keys.deadlines) == 0
    assert await server.app.redis.hget(keys.totals, member.id) is None
    balance = await server.api.balance(member.id)
    assert (balance.balance, balance.held) == (1000, 0)
    assert pg_rows(server, "SELECT count(*) FROM lottery_draws") == [(0,)]
    # The key is free again: the retry draws, pays once and wins the prize given back.
    retried = await draw(server, member.id, lot.id, idem=idem)
    assert retried.draw.prize.id == lot.prizes[0].id and not retried.replayed
    assert (await server.api.balance(member.id)).balance == 900


async def test_a_committed_draw_whose_settle_was_lost_is_marked_done(server: Running) -> None:
    lot = await lottery(server, stock=1, weight=1_000_000, consolation_weight=1, cost=100)
    member = await server.api.member(points=1000)
    first = await draw(server, member.id, lot.id)
    keys = LotteryKeys(lot.id)
    hold = hold_id(member.id, first.draw.idempotency_key)
    # As if the server died between the commit and the settle: the record still held.
    day, _ = utc_day(datetime.now(UTC))
    await server.app.redis.hset(
        keys.record(hold), mapping={"state": "held", "deadline": 1, "day": day}
    )
    await server.app.redis.zadd(keys.deadlines, {hold: 1})

    await server.app.sweeper.sweep_once()
    again = await draw(server, member.id, lot.id, idem=first.draw.idempotency_key)

    assert await server.app.redis.hget(keys.record(hold), "state") == b"done"
    assert int(await server.app.redis.hget(keys.state, "left1") or 0) == 0  # still awarded
    assert again.replayed and again.draw.id == first.draw.id
    assert (await server.api.balance(member.id)).balance == 900
    assert pg_rows(server, "SELECT awarded FROM lottery_prizes WHERE kind = 'GOOD'") == [(1,)]


async def test_rebuild_loads_a_flushed_lottery_from_postgresql(server: Running) -> None:
    lot = await lottery(server, stock=3, weight=1_000_000, consolation_weight=1, total=5)
    member = await server.api.member(points=1000)
    for _ in range(2):
        await draw(server, member.id, lot.id)
    keys = LotteryKeys(lot.id)
    await server.app.redis.flushall()

    loaded = await server.app.lotteries.load_all_into_gate()
    again = await server.app.lotteries.load_all_into_gate()  # a live state is left alone

    assert (loaded, again) == (1, 0)
    assert int(await server.app.redis.hget(keys.state, "left1") or 0) == 1
    assert int(await server.app.redis.hget(keys.totals, member.id) or 0) == 2
    assert await server.app.redis.ttl(keys.state) > 0
