"""Earning by spend and by task, and tiers evaluated on their thresholds' edges."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import pytest

from loyalty.v1 import member_pb2
from points.program import Program, TaskRule, Tier, add_months
from tests.conftest import Running, StartServer
from tests.factories import failure
from tests.points.helpers import assert_ledger_holds, program, start_with_program

LADDER = (
    Tier("base", 0, Decimal(1)),
    Tier("silver", 1_000, Decimal("1.5")),
    Tier("gold", 3_000, Decimal(2)),
)


def purchase(member_id: str, cents: int, event: str) -> member_pb2.EarnForPurchaseRequest:
    return member_pb2.EarnForPurchaseRequest(
        member_id=member_id, amount_cents=cents, event_id=event
    )


def task(member_id: str, rule: str, event: str) -> member_pb2.EarnForTaskRequest:
    return member_pb2.EarnForTaskRequest(member_id=member_id, rule=rule, event_id=event)


async def tiered(start_server: StartServer, **changes: object) -> Running:
    return await start_with_program(start_server, program(tiers=LADDER, **changes))


async def test_purchase_points_use_rate_multiplier_and_round_down(
    start_server: StartServer,
) -> None:
    running = await tiered(start_server, earn_rate=Decimal("2"))
    api = running.api
    member = await api.member()

    base = await api.members.EarnForPurchase(purchase(member.id, 50_099, "o-1"))  # 1001.98
    replay = await api.members.EarnForPurchase(purchase(member.id, 50_099, "o-1"))
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await api.members.EarnForPurchase(purchase(member.id, 1, "o-1"))
    await api.members.EvaluateTier(member_pb2.EvaluateTierRequest(member_id=member.id))
    silver = await api.members.EarnForPurchase(purchase(member.id, 333, "o-2"))  # 3.33 x2 x1.5
    tiny = await api.members.EarnForPurchase(purchase(member.id, 33, "o-3"))  # 0.99 x 3 = 0

    assert base.points == 1001 and base.balance.balance == 1001
    assert replay.replayed and replay.ledger_entry_id == base.ledger_entry_id
    assert failure(reused.value).reason == "IDEMPOTENCY_KEY_REUSED"
    assert (silver.points, silver.balance.tier) == (9, "silver")
    assert (tiny.points, tiny.ledger_entry_id) == (0, "")
    assert (await assert_ledger_holds(running, member.id)).balance == 1010


async def test_task_rules_pay_fixed_points_up_to_their_cap(start_server: StartServer) -> None:
    rules = (TaskRule("register", 50, 1), TaskRule("share", 10, 2), TaskRule("review", 20, None))
    running = await start_with_program(start_server, program(task_rules=rules))
    api = running.api
    member = await api.member()

    registered = await api.members.EarnForTask(task(member.id, "register", "e-1"))
    replay = await api.members.EarnForTask(task(member.id, "register", "e-1"))
    with pytest.raises(grpc.aio.AioRpcError) as capped:
        await api.members.EarnForTask(task(member.id, "register", "e-2"))
    shares = [await api.members.EarnForTask(task(member.id, "share", f"s-{i}")) for i in (1, 2)]
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await api.members.EarnForTask(task(member.id, "review", "e-1"))
    reviews = [await api.members.EarnForTask(task(member.id, "review", f"r-{i}")) for i in range(3)]

    assert (registered.points, registered.balance.balance) == (50, 50)
    assert replay.replayed and replay.ledger_entry_id == registered.ledger_entry_id
    assert failure(capped.value).reason == "TASK_CAP_REACHED"
    assert failure(capped.value).metadata == {"rule": "register", "cap": "1"}
    assert [s.points for s in shares] == [10, 10]
    assert failure(reused.value).reason == "IDEMPOTENCY_KEY_REUSED"
    assert reviews[-1].balance.balance == 50 + 20 + 60
    assert reviews[-1].balance.lifetime_earned == 130
    await assert_ledger_holds(running, member.id)


async def test_earning_errors_name_the_field(server: Running) -> None:
    api = server.api
    member = await api.member()
    cases: list[tuple[Awaitable[object], str]] = [
        (api.members.EarnForTask(task(member.id, "dance", "e")), "rule"),
        (api.members.EarnForTask(task(member.id, "", "e")), "rule"),
        (api.members.EarnForTask(task(member.id, "share", "")), "event_id"),
        (api.members.EarnForPurchase(purchase(member.id, 0, "e")), "amount_cents"),
        (api.members.EarnForPurchase(purchase(member.id, 100, "")), "event_id"),
        (api.members.EarnForPurchase(purchase("x", 100, "e")), "member_id"),
    ]
    for call, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await call
        assert (failure(bad.value).code, failure(bad.value).field) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            field,
        )
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await api.members.EarnForPurchase(purchase(str(uuid.uuid4()), 100, "e"))
    assert failure(missing.value).code == grpc.StatusCode.NOT_FOUND


async def backdated_earn(running: Running, member_id: str, points: int, at: datetime) -> None:
    """A qualifying lot earned at `at` (the API always earns now)."""
    async with running.app.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO point_lots (member_id, source, amount, remaining, qualifying, "
            "earned_at, expires_at, reference) VALUES (%s, 'earn', %s, %s, %s, %s, NULL, 'x')",
            (member_id, points, points, points, at),
        )
        await conn.execute(
            "SELECT post_entry(%s, 'earn', %s, 0, 'x', 'backdated')", (member_id, points)
        )


async def test_tiers_on_the_thresholds_edges(start_server: StartServer) -> None:
    running = await tiered(start_server)
    tiers = running.app.points.tiers
    now = datetime.now(UTC)
    below, at, above_gold = (
        await running.api.member(),
        await running.api.member(),
        await running.api.member(),
    )
    await backdated_earn(running, below.id, 999, now - timedelta(days=1))
    await backdated_earn(running, at.id, 1_000, now - timedelta(days=1))
    await backdated_earn(running, above_gold.id, 3_000, now - timedelta(days=1))

    statuses = [await tiers.evaluate_tier(member_id=m.id, now=now) for m in (below, at, above_gold)]

    assert [s.tier for s in statuses] == ["base", "silver", "gold"]
    assert statuses[0].valid_until is None
    assert statuses[1].valid_until == add_months(now, 12)
    assert [s.qualifying for s in statuses] == [999, 1_000, 3_000]


async def test_the_window_edge_and_keeping_a_reached_tier(start_server: StartServer) -> None:
    running = await tiered(start_server)
    tiers = running.app.points.tiers
    member = await running.api.member()
    now = datetime.now(UTC)
    # Earned exactly at the window's start: no longer inside the rolling 12 months.
    await backdated_earn(running, member.id, 1_000, add_months(now, -12))
    outside = await tiers.evaluate_tier(member_id=member.id, now=now)
    inside = await tiers.evaluate_tier(member_id=member.id, now=now - timedelta(microseconds=1))
    # Reached just before the edge: kept for 12 months though the points age out.
    kept = await tiers.evaluate_tier(member_id=member.id, now=now + timedelta(days=300))
    lapsed = await tiers.evaluate_tier(
        member_id=member.id, now=add_months(now - timedelta(microseconds=1), 12)
    )

    assert (outside.tier, outside.qualifying) == ("base", 0)
    assert (inside.tier, inside.qualifying) == ("silver", 1_000)
    assert (kept.tier, kept.qualifying) == ("silver", 0)
    assert kept.valid_until == add_months(now - timedelta(microseconds=1), 12)
    assert lapsed.tier == "base"


async def test_a_manual_tier_is_a_floor(start_server: StartServer) -> None:
    running = await tiered(start_server)
    api = running.api
    member = await api.member()

    floor = await api.members.SetManualTier(
        member_pb2.SetManualTierRequest(
            member_id=member.id, tier="silver", reason="vip", operator_id="op"
        )
    )
    await backdated_earn(running, member.id, 3_000, datetime.now(UTC) - timedelta(days=1))
    above = await api.members.EvaluateTier(member_pb2.EvaluateTierRequest(member_id=member.id))
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await api.members.SetManualTier(
            member_pb2.SetManualTierRequest(
                member_id=member.id, tier="diamond", reason="x", operator_id="op"
            )
        )
    cleared = await api.members.SetManualTier(
        member_pb2.SetManualTierRequest(member_id=member.id, tier="", reason="x", operator_id="op")
    )
    balance = await api.balance(member.id)

    assert (floor.tier, floor.reached_tier, floor.manual_tier) == ("silver", "base", "silver")
    assert not floor.HasField("valid_until")
    assert (above.tier, above.reached_tier, above.manual_tier) == ("gold", "gold", "silver")
    assert failure(bad.value).field == "tier"
    assert (cleared.tier, cleared.manual_tier) == ("gold", "")
    assert balance.tier == "gold" and balance.HasField("tier_valid_until")


async def test_the_daily_evaluation_covers_every_member(start_server: StartServer) -> None:
    from points.jobs import LedgerJobs

    running = await tiered(start_server)
    a, b = await running.api.member(), await running.api.member()
    await backdated_earn(running, a.id, 1_500, datetime.now(UTC) - timedelta(days=2))
    jobs = LedgerJobs(running.app.pool, running.app.points)

    # A day from now, so a run the server itself made at start does not count.
    later = datetime.now(UTC) + timedelta(days=1, minutes=1)
    first = await jobs.run_once(later)
    second = await jobs.run_once(later + timedelta(hours=23))  # not due again within the day

    assert (first.tiers_evaluated, first.tier_changes) == (True, 1)
    assert not second.tiers_evaluated
    assert (await running.api.balance(a.id)).tier == "silver"
    assert (await running.api.balance(b.id)).tier == "base"


def test_default_program_matches_the_issue() -> None:
    p = Program()
    assert [(t.name, t.threshold) for t in p.tiers] == [
        ("base", 0),
        ("silver", 50_000),
        ("gold", 150_000),
        ("platinum", 250_000),
    ]
    assert p.points_for_purchase(10_000, Decimal("1.5")) == 150
    assert p.redemption_threshold == 0 and p.max_beneficiaries == 8


async def test_tier_and_member_errors_name_the_field(server: Running) -> None:
    api = server.api
    member = await api.member()
    unknown = str(uuid.uuid4())
    manual = member_pb2.SetManualTierRequest
    cases: list[tuple[Awaitable[object], grpc.StatusCode, str]] = [
        (
            api.members.EvaluateTier(member_pb2.EvaluateTierRequest(member_id="x")),
            INVALID,
            "member_id",
        ),
        (
            api.members.EvaluateTier(member_pb2.EvaluateTierRequest(member_id=unknown)),
            NOT_FOUND,
            "",
        ),
        (
            api.members.SetManualTier(manual(member_id=member.id, tier="gold", operator_id="op")),
            INVALID,
            "reason",
        ),
        (
            api.members.SetManualTier(manual(member_id=member.id, tier="gold", reason="r")),
            INVALID,
            "operator_id",
        ),
        (
            api.members.SetManualTier(
                manual(member_id=unknown, tier="", reason="r", operator_id="o")
            ),
            NOT_FOUND,
            "",
        ),
        (
            api.members.RemoveBeneficiary(
                member_pb2.RemoveBeneficiaryRequest(member_id=member.id, beneficiary_id="x")
            ),
            INVALID,
            "beneficiary_id",
        ),
        (
            api.members.RemoveBeneficiary(
                member_pb2.RemoveBeneficiaryRequest(member_id=unknown, beneficiary_id=member.id)
            ),
            NOT_FOUND,
            "",
        ),
        (
            api.members.UnfreezeMember(
                member_pb2.UnfreezeMemberRequest(member_id=unknown, reason="r")
            ),
            NOT_FOUND,
            "",
        ),
        (
            api.members.GetBalance(member_pb2.MemberServiceGetBalanceRequest(member_id="x")),
            INVALID,
            "member_id",
        ),
    ]
    for call, code, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await call
        assert (failure(bad.value).code, failure(bad.value).field) == (code, field)


INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
