"""Daily check-in (points/checkin/), through a real channel on real Redis and PostgreSQL.

"Today" is the domain's clock (CheckIns.clock), moved by the tests day by day: the API
carries no date a client could set."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import grpc
import pytest

from common.env import ConfigError
from loyalty.v1 import checkin_pb2, checkin_pb2_grpc, member_pb2
from points.program import Program
from tests import auth
from tests.conftest import Running, StartServer
from tests.factories import failure, key
from tests.flashsale.helpers import settled_audit
from tests.lottery.helpers import pg_rows
from tests.points.helpers import assert_ledger_holds, program, start_with_program

if TYPE_CHECKING:
    from loyalty.v1.checkin_pb2_grpc import CheckInServiceAsyncStub


class Clock:
    """A settable now: noon UTC ten days ago, moved forward by the test."""

    def __init__(self) -> None:
        self.at = (datetime.now(UTC) - timedelta(days=10)).replace(
            hour=12, minute=0, second=0, microsecond=0
        )

    def __call__(self) -> datetime:
        return self.at

    def next_day(self, days: int = 1) -> None:
        self.at += timedelta(days=days)


def _clocked(*servers: Running) -> Clock:
    clock = Clock()
    for s in servers:
        s.app.checkins.clock = clock
    return clock


def _stub(running: Running) -> CheckInServiceAsyncStub:
    return checkin_pb2_grpc.CheckInServiceStub(running.channel)


async def _check_in(
    running: Running, member_id: str, idem: str | None = None
) -> checkin_pb2.CheckInResponse:
    return await _stub(running).CheckIn(
        checkin_pb2.CheckInRequest(member_id=member_id, idempotency_key=idem or key())
    )


async def _status(running: Running, member_id: str) -> checkin_pb2.GetCheckInStatusResponse:
    return await _stub(running).GetCheckInStatus(
        checkin_pb2.GetCheckInStatusRequest(member_id=member_id)
    )


def _entries(running: Running, member_id: str) -> list[tuple[str, int, str]]:
    return [
        (str(r[0]), int(r[1]), str(r[2]))
        for r in pg_rows(
            running,
            "SELECT kind, amount, reference FROM ledger_entries WHERE member_id = %s "
            "ORDER BY created_at, id",
            member_id,
        )
    ]


async def test_a_seven_day_streak_earns_ten_six_times_then_a_hundred_then_starts_again(
    server: Running,
) -> None:
    clock = _clocked(server)
    member = await server.api.member()
    before = await _status(server, member.id)

    answers = []
    for _ in range(8):
        answers.append(await _check_in(server, member.id))
        clock.next_day()

    assert (before.streak, before.checked_in_today, before.next_reward) == (0, False, 10)
    assert before.last_day == ""
    assert [a.streak for a in answers] == [1, 2, 3, 4, 5, 6, 7, 8]
    # Day 8 is day 1 of the next cycle of SURGE_CHECKIN_REWARDS.
    assert [a.points_credited for a in answers] == [10, 10, 10, 10, 10, 10, 100, 10]
    assert [a.next_reward for a in answers] == [10, 10, 10, 10, 10, 100, 10, 10]
    assert not any(a.replayed for a in answers)
    assert answers[6].balance.balance == 160
    assert answers[7].balance.balance == 170
    first_day = (clock.at - timedelta(days=8)).date()
    assert [a.day for a in answers] == [
        (first_day + timedelta(days=i)).isoformat() for i in range(8)
    ]
    assert _entries(server, member.id) == [
        ("earn", a.points_credited, f"checkin:{a.day}") for a in answers
    ]
    ledger = await assert_ledger_holds(server, member.id)  # the Redis mirror too
    assert ledger.redis_spendable == 170
    assert (await settled_audit(server)).ok


async def test_a_missed_day_resets_the_streak_to_day_one(server: Running) -> None:
    clock = _clocked(server)
    member = await server.api.member()
    await _check_in(server, member.id)
    clock.next_day()
    second = await _check_in(server, member.id)
    done_today = await _status(server, member.id)
    clock.next_day()
    next_morning = await _status(server, member.id)
    clock.next_day()  # the day in between was missed
    missed = await _status(server, member.id)
    after = await _check_in(server, member.id)

    assert second.streak == 2
    assert (done_today.streak, done_today.checked_in_today) == (2, True)
    assert done_today.last_day == done_today.today == second.day
    # Yesterday's streak still counts until today is over.
    assert (next_morning.streak, next_morning.checked_in_today, next_morning.next_reward) == (
        2,
        False,
        10,
    )
    assert (missed.streak, missed.checked_in_today, missed.last_day) == (0, False, second.day)
    assert (after.streak, after.points_credited, after.balance.balance) == (1, 10, 30)
    await assert_ledger_holds(server, member.id)


async def test_the_same_key_replays_and_another_key_the_same_day_is_refused(
    server: Running,
) -> None:
    clock = _clocked(server)
    member = await server.api.member()
    idem = key()
    first = await _check_in(server, member.id, idem)
    again = await _check_in(server, member.id, idem)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _check_in(server, member.id)
    entries = _entries(server, member.id)
    clock.next_day()
    tomorrow_same_key = await _check_in(server, member.id, idem)

    assert not first.replayed and again.replayed
    assert (again.day, again.streak, again.points_credited, again.ledger_entry_id) == (
        first.day,
        first.streak,
        first.points_credited,
        first.ledger_entry_id,
    )
    assert again.balance.balance == first.balance.balance == 10
    got = failure(refused.value)
    assert (got.code, got.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_CHECKED_IN")
    assert got.metadata["day"] == first.day
    assert entries == [("earn", 10, f"checkin:{first.day}")]
    # The key names its check-in for good: tomorrow it is still a replay of today's.
    assert tomorrow_same_key.replayed and tomorrow_same_key.day == first.day
    assert (await server.api.balance(member.id)).balance == 10
    await assert_ledger_holds(server, member.id)


async def test_two_servers_racing_fifty_check_ins_credit_exactly_one(
    start_server: StartServer,
) -> None:
    one, two = await start_server(), await start_server()
    _clocked(one, two)
    member = await one.api.member(points=5)

    async def attempt(i: int) -> str:
        try:
            await _check_in(one if i % 2 else two, member.id)
        except grpc.aio.AioRpcError as e:
            return failure(e).reason
        return "OK"

    outcomes = Counter(await asyncio.gather(*(attempt(i) for i in range(50))))

    assert outcomes == Counter({"OK": 1, "ALREADY_CHECKED_IN": 49})
    assert pg_rows(
        one, "SELECT count(*), sum(points) FROM checkins WHERE member_id = %s", member.id
    ) == [(1, 10)]
    checkins = [e for e in _entries(one, member.id) if e[2].startswith("checkin:")]
    assert [(kind, amount) for kind, amount, _ in checkins] == [("earn", 10)]
    ledger = await assert_ledger_holds(one, member.id)
    assert ledger.balance == ledger.redis_spendable == 15
    assert (await settled_audit(one)).ok


async def test_frozen_and_unknown_members_and_bad_input_are_refused_changing_nothing(
    server: Running,
) -> None:
    _clocked(server)
    frozen = await server.api.member(points=7)
    await server.api.members.FreezeMember(
        member_pb2.FreezeMemberRequest(member_id=frozen.id, reason="fraud review")
    )
    before = await assert_ledger_holds(server, frozen.id)
    unknown = str(uuid.uuid4())

    calls: list[Awaitable[object]] = [
        _check_in(server, frozen.id),
        _check_in(server, unknown),
        _status(server, unknown),
        _check_in(server, "not-a-uuid"),
        _stub(server).CheckIn(checkin_pb2.CheckInRequest(member_id=frozen.id)),
        _check_in(server, frozen.id, "x" * 129),
    ]
    got = []
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        f = failure(refused.value)
        got.append((f.code, f.reason, f.field))

    assert got == [
        (grpc.StatusCode.FAILED_PRECONDITION, "MEMBER_FROZEN", ""),
        (grpc.StatusCode.NOT_FOUND, "NOT_FOUND", ""),
        (grpc.StatusCode.NOT_FOUND, "NOT_FOUND", ""),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "member_id"),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "idempotency_key"),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "idempotency_key"),
    ]
    assert await assert_ledger_holds(server, frozen.id) == before
    assert pg_rows(server, "SELECT count(*) FROM checkins") == [(0,)]
    # Unfrozen, the member checks in as if nothing happened.
    await server.api.members.UnfreezeMember(
        member_pb2.UnfreezeMemberRequest(member_id=frozen.id, reason="cleared")
    )
    assert (await _check_in(server, frozen.id)).streak == 1


async def test_the_day_is_the_malls_local_day(start_server: StartServer) -> None:
    running = await start_with_program(
        start_server, program(time_zone="Asia/Shanghai", checkin_rewards=(5, 50))
    )
    clock = _clocked(running)
    member = await running.api.member()
    clock.at = clock.at.replace(hour=15, minute=30)  # 23:30 in Shanghai
    late = await _check_in(running, member.id)
    clock.at = clock.at.replace(hour=16, minute=30)  # 00:30 the next day in Shanghai
    early = await _check_in(running, member.id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _check_in(running, member.id)

    assert (late.streak, late.points_credited, early.streak, early.points_credited) == (1, 5, 2, 50)
    assert early.day == (clock.at + timedelta(hours=8)).date().isoformat() != late.day
    assert failure(refused.value).metadata["day"] == early.day
    assert early.next_reward == 5  # two configured days: day 3 starts the cycle again


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SURGE_TIME_ZONE": "Mars/Olympus_Mons"}, "SURGE_TIME_ZONE must be an IANA"),
        ({"SURGE_CHECKIN_REWARDS": "10,ten"}, "SURGE_CHECKIN_REWARDS must be whole points"),
        ({"SURGE_CHECKIN_REWARDS": "10,0,100"}, "every reward must be 1.."),
        ({"SURGE_CHECKIN_REWARDS": "10,-5"}, "every reward must be 1.."),
    ],
)
def test_a_bad_check_in_configuration_stops_the_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Program.load(env)


def test_the_check_in_configuration_loads_with_defaults() -> None:
    default = Program.load({})
    custom = Program.load({"SURGE_TIME_ZONE": "Europe/Paris", "SURGE_CHECKIN_REWARDS": "1,2,3"})

    assert (default.time_zone, default.checkin_rewards) == ("UTC", (10, 10, 10, 10, 10, 10, 100))
    assert (custom.time_zone, custom.checkin_rewards) == ("Europe/Paris", (1, 2, 3))
    assert [custom.checkin_reward(day) for day in range(1, 8)] == [1, 2, 3, 1, 2, 3, 1]


async def test_concurrent_calls_with_one_key_credit_once_and_replay_the_rest(
    server: Running,
) -> None:
    _clocked(server)
    member = await server.api.member()
    idem = key()

    answers = await asyncio.gather(*(_check_in(server, member.id, idem) for _ in range(10)))

    assert sorted(a.replayed for a in answers) == [False] + [True] * 9
    assert {(a.day, a.streak, a.points_credited, a.ledger_entry_id) for a in answers} == {
        (answers[0].day, 1, 10, answers[0].ledger_entry_id)
    }
    assert (await assert_ledger_holds(server, member.id)).balance == 10


async def test_the_gateway_may_check_in_and_reports_may_only_read(server: Running) -> None:
    _clocked(server)
    member = await server.api.member()
    target = f"127.0.0.1:{server.app.port}"
    storefront = auth.channel(target, auth.token(["storefront"]))
    reports = auth.channel(target, auth.token(["reports"]))
    try:
        done = await checkin_pb2_grpc.CheckInServiceStub(storefront).CheckIn(
            checkin_pb2.CheckInRequest(member_id=member.id, idempotency_key=key())
        )
        status = await checkin_pb2_grpc.CheckInServiceStub(reports).GetCheckInStatus(
            checkin_pb2.GetCheckInStatusRequest(member_id=member.id)
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await checkin_pb2_grpc.CheckInServiceStub(reports).CheckIn(
                checkin_pb2.CheckInRequest(member_id=member.id, idempotency_key=key())
            )
    finally:
        await storefront.close()
        await reports.close()

    assert (done.streak, status.streak, status.checked_in_today) == (1, 1, True)
    assert failure(refused.value).reason == "SCOPE_MISSING"


async def test_the_audit_finds_a_check_in_whose_entry_disagrees(server: Running) -> None:
    _clocked(server)
    member = await server.api.member()
    done = await _check_in(server, member.id)
    clean = await settled_audit(server)
    pg_rows(server, "UPDATE checkins SET points = 11 WHERE member_id = %s RETURNING 1", member.id)

    report = await settled_audit(server)

    assert clean.ok
    assert [v for v in report.violations if "check-in without its earn entry" in v] != []
    assert done.points_credited == 10
