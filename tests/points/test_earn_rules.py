"""Earn rules through a real channel: member days, thresholds, budgets under concurrency,
per-member caps, stacking, bad rules (README.md, "Earn rules")."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc
import pytest

from loyalty.v1 import earn_rules_pb2, member_pb2
from tests.conftest import Running
from tests.factories import failure, ts
from tests.flashsale.helpers import settled_audit
from tests.points.earn_rules_helpers import BONUS, MULTIPLIER, buy, create_rule, rules_api
from tests.points.helpers import assert_ledger_holds

SHANGHAI = "Asia/Shanghai"


async def preview(
    running: Running, member_id: str, cents: int, at: datetime, **extra: str
) -> earn_rules_pb2.PreviewEarnResponse:
    return await rules_api(running).PreviewEarn(
        earn_rules_pb2.PreviewEarnRequest(
            member_id=member_id, amount_cents=cents, at=ts(at), **extra
        )
    )


async def test_member_day_doubles_the_points_of_the_same_purchase(server: Running) -> None:
    member = await server.api.member()
    rule = await create_rule(
        server,
        "member-day",
        MULTIPLIER,
        {"days_of_month": [10]},
        multiplier="2",
        time_zone=SHANGHAI,
    )

    on_the_10th = await preview(server, member.id, 12_345, datetime(2027, 3, 10, 0, 30, tzinfo=UTC))
    day_before = await preview(server, member.id, 12_345, datetime(2027, 3, 9, 12, 0, tzinfo=UTC))
    # 2027-03-09 16:30 UTC is already the 10th in Shanghai (UTC+8).
    shanghai_10th = await preview(
        server, member.id, 12_345, datetime(2027, 3, 9, 16, 30, tzinfo=UTC)
    )

    assert (day_before.base_points, day_before.points) == (123, 123)
    assert list(day_before.rules) == []
    assert (on_the_10th.base_points, on_the_10th.points) == (123, 246)
    assert [(r.rule_id, r.points) for r in on_the_10th.rules] == [(rule.id, 123)]
    assert shanghai_10th.points == 246
    assert (await server.api.balance(member.id)).balance == 0  # a preview changes nothing


async def test_todays_member_day_rule_credits_double_and_names_itself_on_the_entry(
    server: Running,
) -> None:
    member = await server.api.member()
    today = datetime.now(UTC).day
    rule = await create_rule(
        server, "today", MULTIPLIER, {"days_of_month": [today]}, multiplier="2", time_zone="UTC"
    )

    earned = await buy(server, member.id, 10_000, "p1")

    assert (earned.base_points, earned.points) == (100, 200)
    assert [(r.rule_id, r.points) for r in earned.applied_rules] == [(rule.id, 100)]
    assert earned.balance.balance == 200 and not earned.pending
    page = await server.api.members.ListLedgerEntries(
        member_pb2.ListLedgerEntriesRequest(member_id=member.id)
    )
    assert [list(e.earn_rule_ids) for e in page.entries] == [[rule.id]]
    replay = await buy(server, member.id, 10_000, "p1")
    assert replay.replayed and replay.points == 200 and replay.base_points == 100
    assert [r.rule_id for r in replay.applied_rules] == [rule.id]
    assert (
        await rules_api(server).GetEarnRule(earn_rules_pb2.GetEarnRuleRequest(id=rule.id))
    ).given_points == 100
    await assert_ledger_holds(server, member.id)
    assert (await settled_audit(server)).ok


async def test_threshold_bonus_at_the_threshold_and_one_cent_below(server: Running) -> None:
    member = await server.api.member()
    await create_rule(server, "big-basket", BONUS, {"min_amount_cents": 20_000}, bonus_points=50)

    at = await buy(server, member.id, 20_000)
    below = await buy(server, member.id, 19_999)

    assert (at.base_points, at.points) == (200, 250)
    assert (below.base_points, below.points, list(below.applied_rules)) == (199, 199, [])
    assert (await server.api.balance(member.id)).balance == 449
    await assert_ledger_holds(server, member.id)


async def test_a_budget_is_never_exceeded_by_concurrent_earns(server: Running) -> None:
    rule = await create_rule(server, "first-come", BONUS, bonus_points=10, budget_points=95)
    members = [await server.api.member() for _ in range(50)]

    results = await asyncio.gather(*(buy(server, m.id, 1_000) for m in members))

    given = [sum(r.points for r in e.applied_rules) for e in results]
    assert sum(given) == 95
    assert sorted(g for g in given if g)[:1] == [5] and given.count(10) == 9
    stored = await rules_api(server).GetEarnRule(earn_rules_pb2.GetEarnRuleRequest(id=rule.id))
    assert stored.given_points == 95
    assert sum(e.points for e in results) == 50 * 10 + 95
    limited = await rules_api(server).PreviewEarn(
        earn_rules_pb2.PreviewEarnRequest(member_id=members[0].id, amount_cents=1_000)
    )
    assert [(r.points, r.wanted_points, r.limited_by) for r in limited.rules] == [
        (0, 10, "BUDGET_EXHAUSTED")
    ]
    assert (await settled_audit(server)).ok


async def test_per_member_cap(server: Running) -> None:
    member, other = await server.api.member(), await server.api.member()
    await create_rule(server, "welcome", BONUS, bonus_points=30, per_member_cap=50)

    first, second, third = [await buy(server, member.id, 100) for _ in range(3)]
    theirs = await buy(server, other.id, 100)

    assert [r.points for r in first.applied_rules] == [30]
    assert [r.points for r in second.applied_rules] == [20]
    assert list(third.applied_rules) == [] and third.points == 1
    assert [r.points for r in theirs.applied_rules] == [30]


async def test_multipliers_do_not_stack_bonuses_add(server: Running) -> None:
    member = await server.api.member()
    triple = await create_rule(server, "triple", MULTIPLIER, multiplier="3", priority=10)
    await create_rule(server, "double", MULTIPLIER, multiplier="2", priority=5)
    await create_rule(
        server, "app-bonus", BONUS, {"channels": ["app"], "categories": ["food"]}, bonus_points=7
    )

    app_food = await buy(server, member.id, 1_000, channel="app", category="food")
    store_food = await buy(server, member.id, 1_000, channel="store", category="food")
    why = await rules_api(server).PreviewEarn(
        earn_rules_pb2.PreviewEarnRequest(member_id=member.id, amount_cents=1_000, channel="app")
    )

    assert app_food.points == 10 + 20 + 7
    assert store_food.points == 10 + 20
    assert [(r.name, r.points, r.limited_by) for r in why.rules] == [
        ("triple", 20, ""),
        ("double", 0, "NOT_STACKED"),
    ]
    ended = await rules_api(server).EndEarnRule(earn_rules_pb2.EndEarnRuleRequest(id=triple.id))
    assert ended.HasField("end_time")
    after = await buy(server, member.id, 1_000)
    assert after.points == 20  # the double applies now
    listed = await rules_api(server).ListEarnRules(earn_rules_pb2.ListEarnRulesRequest())
    assert [r.name for r in listed.rules] == ["double", "app-bonus"]


async def test_a_spent_multiplier_steps_aside_for_the_next(server: Running) -> None:
    member = await server.api.member()
    await create_rule(
        server, "double day", MULTIPLIER, multiplier="2", priority=10, budget_points=30
    )
    await create_rule(server, "card x1.5", MULTIPLIER, multiplier="1.5", priority=5)

    first = await buy(server, member.id, 10_000)  # base 100: the double gives its budget, 30
    second = await buy(server, member.id, 10_000)  # its budget is spent: the x1.5 gives 50

    assert [(r.name, r.points) for r in first.applied_rules if r.points] == [("double day", 30)]
    assert first.points == 130
    assert [(r.name, r.points) for r in second.applied_rules if r.points] == [("card x1.5", 50)]
    assert second.points == 150


@pytest.mark.parametrize(
    ("fields", "conditions", "field"),
    [
        (
            {"multiplier": "2"},
            {
                "days_of_month": [31],
                "starts_at": datetime(2027, 2, 1, tzinfo=UTC),
                "ends_at": datetime(2027, 3, 1, tzinfo=UTC),
            },
            "days_of_month",
        ),
        ({"multiplier": "2"}, {"days_of_month": [32]}, "days_of_month"),
        ({"multiplier": "2"}, {"days_of_month": [0]}, "days_of_month"),
        ({"multiplier": "-2"}, {}, "multiplier"),
        ({"multiplier": "x"}, {}, "multiplier"),
        ({"multiplier": "2", "time_zone": "Mars/Olympus"}, {}, "time_zone"),
        ({"multiplier": "2"}, {"tiers": ["diamond"]}, "tiers"),
        ({"multiplier": "2", "budget_points": 10, "per_member_cap": 20}, {}, "per_member_cap"),
        ({"multiplier": "2"}, {"weekdays": [8]}, "weekdays"),
        (
            {"multiplier": "2", "time_zone": "Asia/Shanghai"},
            {"days_of_month": [11], "ends_at": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)},
            "ends_at",
        ),
    ],
)
async def test_bad_rules_are_refused_naming_the_field_and_change_nothing(
    server: Running, fields: dict[str, object], conditions: dict[str, object], field: str
) -> None:
    conds = {k: ts(v) if isinstance(v, datetime) else v for k, v in conditions.items()}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create_rule(server, "bad", MULTIPLIER, conds, **fields)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(refused.value).field == field
    listed = await rules_api(server).ListEarnRules(
        earn_rules_pb2.ListEarnRulesRequest(include_ended=True)
    )
    assert list(listed.rules) == []


async def test_rule_changes_are_audited_and_names_are_unique(server: Running) -> None:
    rule = await create_rule(server, "dup", BONUS, bonus_points=5)
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await create_rule(server, "dup", BONUS, bonus_points=5)
    await rules_api(server).EndEarnRule(earn_rules_pb2.EndEarnRuleRequest(id=rule.id))

    assert again.value.code() == grpc.StatusCode.ALREADY_EXISTS
    async with server.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, subject FROM audit_events WHERE target_id = %s ORDER BY id",
            (rule.id,),
        )
        rows = await cur.fetchall()
    assert [r[0] for r in rows] == ["earn_rules.create_earn_rule", "earn_rules.end_earn_rule"]
    assert all(r[1] for r in rows)


async def test_tier_condition_and_bad_purchase_input(server: Running) -> None:
    member = await server.api.member()  # holds the first tier, "base"
    await create_rule(server, "base-only", BONUS, {"tiers": ["base"]}, bonus_points=3)
    await create_rule(server, "gold-only", BONUS, {"tiers": ["gold"]}, bonus_points=5)

    earned = await buy(server, member.id, 100)
    with pytest.raises(grpc.aio.AioRpcError) as too_long:
        await buy(server, member.id, 100, channel="x" * 101)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await rules_api(server).GetEarnRule(
            earn_rules_pb2.GetEarnRuleRequest(id="00000000-0000-4000-8000-000000000000")
        )

    assert [r.name for r in earned.applied_rules] == ["base-only"] and earned.points == 4
    assert failure(too_long.value).field == "channel"
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await server.api.balance(member.id)).balance == 4


async def test_a_preview_at_a_moment_out_of_range_names_at(server: Running) -> None:
    member = await server.api.member()
    await create_rule(server, "any", MULTIPLIER, multiplier="2", time_zone="America/New_York")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await preview(server, member.id, 1_000, datetime(1, 1, 1, tzinfo=UTC))

    f = failure(refused.value)
    assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, "at")
