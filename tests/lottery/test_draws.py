"""Draws through a real channel: points spent once, replays, limits, refusals, and prize
stock never exceeded under concurrency."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest

from lottery.gate import LotteryKeys, hold_id
from loyalty.v1 import lottery_pb2, member_pb2
from tests.conftest import Running, StartServer
from tests.factories import failure, key
from tests.flashsale.helpers import outcomes, settled_audit
from tests.lottery.helpers import NONE, draw, lottery, pg_rows, stub
from tests.points.helpers import earn, program, start_with_program


async def _lottery_state(server: Running, lottery_id: str) -> lottery_pb2.Lottery:
    return await stub(server).GetLottery(lottery_pb2.GetLotteryRequest(lottery_id=lottery_id))


async def test_a_draw_spends_its_cost_once_and_a_retry_returns_the_same_prize(
    server: Running,
) -> None:
    lot = await lottery(server, cost=150)
    member = await server.api.member(points=1000)
    idem = key()

    first = await draw(server, member.id, lot.id, idem=idem)
    again = await draw(server, member.id, lot.id, idem=idem)
    got = await stub(server).GetDraw(
        lottery_pb2.GetDrawRequest(member_id=member.id, draw_id=first.draw.id)
    )

    assert not first.replayed and again.replayed
    assert again.draw.id == first.draw.id and again.draw.prize.id == first.draw.prize.id
    assert got.prize.id == first.draw.prize.id
    balance = await server.api.balance(member.id)
    assert (balance.balance, balance.held) == (850, 0)
    spent = pg_rows(
        server,
        "SELECT kind, amount FROM ledger_entries WHERE reference = %s",
        "lottery_draw:" + first.draw.id,
    )
    assert spent == [("redeem", -150)]
    assert pg_rows(
        server,
        "SELECT sum(points) FROM lot_spends WHERE reference = %s",
        "lottery_draw:" + first.draw.id,
    ) == [(150,)]


async def test_concurrent_calls_with_one_key_share_one_draw(server: Running) -> None:
    lot = await lottery(server, cost=100)
    member = await server.api.member(points=1000)
    idem = key()

    drawn, refused = await outcomes(draw(server, member.id, lot.id, idem=idem) for _ in range(5))

    assert not refused  # none waits out a REQUEST_IN_PROGRESS: they share the first's answer
    assert len({d.draw.id for d in drawn}) == 1 and len({d.draw.prize.id for d in drawn}) == 1
    assert sorted(d.replayed for d in drawn) == [False, True, True, True, True]
    assert (await server.api.balance(member.id)).balance == 900


async def test_same_key_for_another_lottery_is_key_reused_and_changes_nothing(
    server: Running,
) -> None:
    one, two = await lottery(server), await lottery(server)
    member = await server.api.member(points=1000)
    idem = key()
    await draw(server, member.id, one.id, idem=idem)

    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await draw(server, member.id, two.id, idem=idem)

    f = failure(reused.value)
    assert (f.code, f.reason) == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    assert (await server.api.balance(member.id)).balance == 900
    assert pg_rows(server, "SELECT count(*) FROM lottery_draws") == [(1,)]


async def test_concurrent_draws_never_award_more_than_stock_then_only_consolation(
    server: Running,
) -> None:
    # Weight 1000 against 1: the good prize is drawn nearly every time while it lasts.
    lot = await lottery(server, stock=5, weight=1000, consolation_weight=1, cost=10)
    members = [await server.api.member(points=100) for _ in range(40)]

    ok, refused = await outcomes(
        draw(server, m.id, lot.id) for m in members for _ in range(5)
    )  # 200 draws

    assert refused == Counter()
    assert len(ok) == 200
    good_id = lot.prizes[0].id
    won = [r for r in ok if r.draw.prize.id == good_id]
    assert len(won) <= 5
    assert len(won) >= 4  # odds 1000:1 while it lasts (a consolation drawn early is ~2%)
    state = await _lottery_state(server, lot.id)
    assert (state.prizes[0].awarded, state.prizes[0].remaining) == (len(won), 5 - len(won))
    # PostgreSQL agrees with the answers, and every draw's points were spent once.
    assert pg_rows(server, "SELECT count(*) FROM lottery_draws WHERE prize_id = %s", good_id) == [
        (len(won),)
    ]
    assert pg_rows(
        server,
        "SELECT count(*), -sum(amount) FROM ledger_entries WHERE reference LIKE 'lottery_draw:%%'",
    ) == [(200, 2000)]
    report = await settled_audit(server)
    assert report.ok, report
    # With the stock gone every further draw is the consolation, and the odds say so.
    if len(won) == 5:
        later = await draw(server, members[0].id, lot.id)
        assert later.draw.prize.kind == NONE
        assert (state.prizes[0].odds, state.prizes[1].odds) == (0.0, 1.0)


async def test_the_per_member_total_and_daily_limits_hold_under_concurrency(
    server: Running,
) -> None:
    daily = await lottery(server, daily=3, total=10, cost=10)
    total = await lottery(server, daily=10, total=2, cost=10)
    member = await server.api.member(points=1000)

    ok_day, refused_day = await outcomes(draw(server, member.id, daily.id) for _ in range(8))
    ok_total, refused_total = await outcomes(draw(server, member.id, total.id) for _ in range(8))
    with pytest.raises(grpc.aio.AioRpcError) as limited:
        await draw(server, member.id, daily.id)

    assert (len(ok_day), refused_day) == (3, Counter({"LIMIT_EXCEEDED": 5}))
    assert (len(ok_total), refused_total) == (2, Counter({"LIMIT_EXCEEDED": 6}))
    f = failure(limited.value)
    assert (f.metadata["period"], f.metadata["per_member_limit"]) == ("daily", "3")
    assert (await server.api.balance(member.id)).balance == 1000 - 5 * 10
    assert pg_rows(
        server,
        "SELECT draws_total, draws_day FROM lottery_members WHERE lottery_id = %s",
        daily.id,
    ) == [(3, 3)]


async def test_insufficient_points_and_frozen_members_are_refused_spending_nothing(
    server: Running,
) -> None:
    lot = await lottery(server, stock=1, weight=1000, consolation_weight=1, cost=500)
    poor = await server.api.member(points=499)
    frozen = await server.api.member(points=1000)
    await server.api.members.FreezeMember(
        member_pb2.FreezeMemberRequest(member_id=frozen.id, reason="fraud review")
    )

    reasons = []
    for m in (poor, frozen):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await draw(server, m.id, lot.id)
        reasons.append((failure(refused.value).code, failure(refused.value).reason))
    # The prize held for the refused draws is back at once: a rich member can still win it.
    state = await _lottery_state(server, lot.id)
    rich = await server.api.member(points=500)
    won = await asyncio.gather(*(draw(server, rich.id, lot.id) for _ in range(1)))

    assert reasons == [
        (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_POINTS"),
        (grpc.StatusCode.FAILED_PRECONDITION, "MEMBER_FROZEN"),
    ]
    assert state.prizes[0].remaining == 1
    assert (await server.api.balance(poor.id)).balance == 499
    assert (await server.api.balance(poor.id)).held == 0
    assert (await server.api.balance(frozen.id)).balance == 1000
    assert pg_rows(server, "SELECT count(*) FROM lottery_draws WHERE member_id <> %s", rich.id) == [
        (0,)
    ]
    assert won[0].draw.cost_points == 500


async def test_a_draw_outside_the_window_is_refused(server: Running) -> None:
    from datetime import timedelta

    lot = await lottery(server, starts_in=timedelta(hours=1))
    member = await server.api.member(points=1000)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await draw(server, member.id, lot.id)

    assert failure(refused.value).reason == "LOTTERY_NOT_ACTIVE"
    assert (await server.api.balance(member.id)).balance == 1000


async def test_bad_draw_requests_name_the_field(server: Running) -> None:
    lot = await lottery(server)
    member = await server.api.member(points=1000)
    for request, field in (
        (
            lottery_pb2.DrawRequest(member_id="x", lottery_id=lot.id, idempotency_key=key()),
            "member_id",
        ),
        (
            lottery_pb2.DrawRequest(member_id=member.id, lottery_id="", idempotency_key=key()),
            "lottery_id",
        ),
        (lottery_pb2.DrawRequest(member_id=member.id, lottery_id=lot.id), "idempotency_key"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub(server).Draw(request)
        assert (failure(bad.value).code, failure(bad.value).field) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            field,
        )
    assert (await server.api.balance(member.id)).balance == 1000


async def test_below_the_redemption_threshold_a_draw_is_refused(start_server: StartServer) -> None:
    running = await start_with_program(start_server, program(redemption_threshold=1000))
    lot = await lottery(running, cost=10)
    member = await running.api.member()
    await earn(running, member.id, 999)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await draw(running, member.id, lot.id)
    await earn(running, member.id, 1)
    drawn = await draw(running, member.id, lot.id)

    assert failure(refused.value).reason == "BELOW_REDEMPTION_THRESHOLD"
    assert drawn.draw.cost_points == 10
    assert (await running.api.balance(member.id)).balance == 990


async def test_redis_prize_stock_matches_postgresql_after_a_surge(server: Running) -> None:
    lot = await lottery(server, stock=7, weight=3, consolation_weight=2, cost=1)
    members = [await server.api.member(points=50) for _ in range(10)]

    await outcomes(draw(server, m.id, lot.id) for m in members for _ in range(6))

    awarded = pg_rows(
        server,
        "SELECT position, stock, awarded FROM lottery_prizes WHERE lottery_id = %s "
        "ORDER BY position",
        lot.id,
    )
    redis_left = await server.app.redis.hmget(LotteryKeys(lot.id).state, ["left1", "left2"])
    assert [int(x or 0) for x in redis_left] == [7 - awarded[0][2], -1]
    assert awarded[0][2] <= 7
    assert pg_rows(server, "SELECT count(*) FROM lottery_draws") == [(60,)]
    # Nothing is left held: every draw was settled before it was answered.
    assert await server.app.redis.zcard(LotteryKeys(lot.id).deadlines) == 0


async def test_postgresql_holds_the_limits_and_the_stock_when_redis_is_wrong(
    server: Running,
) -> None:
    lot = await lottery(server, stock=1, weight=1_000_000, consolation_weight=1, total=1, cost=10)
    member, other = await server.api.member(points=1000), await server.api.member(points=1000)
    won = await draw(server, member.id, lot.id)
    keys = LotteryKeys(lot.id)
    # Redis forgets the member's draw and the award (a lost write, a bad restore).
    await server.app.redis.hdel(keys.totals, member.id)
    await server.app.redis.hset(keys.state, "left1", 1)

    with pytest.raises(grpc.aio.AioRpcError) as limited:
        await draw(server, member.id, lot.id)
    consolation = await draw(server, other.id, lot.id)

    assert won.draw.prize.id == lot.prizes[0].id
    assert failure(limited.value).reason == "LIMIT_EXCEEDED"
    # The prize Redis still offered was gone in PostgreSQL: drawn again, the consolation.
    assert consolation.draw.prize.kind == NONE
    assert int(await server.app.redis.hget(keys.state, "left1") or 0) == 0
    assert pg_rows(
        server,
        "SELECT awarded FROM lottery_prizes WHERE lottery_id = %s ORDER BY position",
        lot.id,
    ) == [(1,), (1,)]
    assert (await server.api.balance(member.id)).balance == 990
    assert (await server.api.balance(other.id)).balance == 990
    # Every key Redis remembers ends: the counters end with the lottery's state.
    assert await server.app.redis.ttl(keys.totals) > 0


async def test_a_retry_of_a_committed_draw_redis_forgot_is_answered_not_refused(
    server: Running,
) -> None:
    lot = await lottery(server, total=1, cost=10)
    member = await server.api.member(points=1000)
    idem = key()
    first = await draw(server, member.id, lot.id, idem=idem)
    # The answer was lost and Redis forgot the key's record (a flush, a failover, its TTL):
    # it is loaded again from PostgreSQL with the member's count, which includes the draw.
    await server.app.redis.delete(LotteryKeys(lot.id).record(hold_id(member.id, idem)))

    again = await draw(server, member.id, lot.id, idem=idem)
    still = await draw(server, member.id, lot.id, idem=idem)  # its refusal was remembered
    with pytest.raises(grpc.aio.AioRpcError) as limited:
        await draw(server, member.id, lot.id)  # a new key is refused by the limit

    assert (again.replayed, again.draw.id, again.draw.prize.id) == (
        True,
        first.draw.id,
        first.draw.prize.id,
    )
    assert (still.replayed, still.draw.id) == (True, first.draw.id)
    assert failure(limited.value).reason == "LIMIT_EXCEEDED"
    assert (await server.api.balance(member.id)).balance == 990


async def test_prizes_are_drawn_by_weight(server: Running) -> None:
    # Weights 1 : 3 with stock to spare: a quarter of the draws win the good. 400 draws give
    # 100 expected, sd ~8.7; the bounds are over 5 sd away, so this fails only if the pick
    # is wrong (e.g. uniform, or the consolation always).
    lot = await lottery(server, stock=1000, weight=1, consolation_weight=3, cost=1, daily=10)
    members = [await server.api.member(points=10) for _ in range(40)]

    ok, refused = await outcomes(draw(server, m.id, lot.id) for m in members for _ in range(10))

    assert (len(ok), refused) == (400, Counter())
    won = sum(1 for r in ok if r.draw.prize.id == lot.prizes[0].id)
    assert 55 <= won <= 145, won


async def test_a_late_commit_of_yesterday_leaves_todays_count_alone(server: Running) -> None:
    lot = await lottery(server, cost=10)
    member = await server.api.member(points=1000)
    await draw(server, member.id, lot.id)
    # As if a draw of tomorrow had committed first (a draw admitted before midnight commits
    # after one admitted after it): the member's row already counts tomorrow's day.
    pg_rows(
        server,
        "UPDATE lottery_members SET day = day + 1, draws_day = 1 "
        "WHERE lottery_id = %s AND member_id = %s RETURNING 1",
        lot.id,
        member.id,
    )

    await draw(server, member.id, lot.id)  # today's: the earlier day

    row = pg_rows(
        server,
        "SELECT day - (now() AT TIME ZONE 'UTC')::date, draws_day, draws_total "
        "FROM lottery_members WHERE lottery_id = %s AND member_id = %s",
        lot.id,
        member.id,
    )
    assert row == [(1, 1, 2)]  # tomorrow's count kept; the total counts both
