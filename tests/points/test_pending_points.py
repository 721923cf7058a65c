"""Pending purchase points (README.md, "Pending points"): not spendable until the leader's
job activates them; a reversal before activation just removes them; the liability report
counts them apart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import pytest

from loyalty.v1 import member_pb2
from points.jobs import LedgerJobs
from tests.conftest import Running, StartServer
from tests.factories import failure, ts
from tests.flashsale.helpers import settled_audit
from tests.points.earn_rules_helpers import BONUS, buy, create_rule
from tests.points.helpers import assert_ledger_holds, program, start_with_program


async def activate(running: Running, at: datetime) -> int:
    report = await LedgerJobs(running.app.pool, running.app.points).run_once(
        at, evaluate_tiers=False
    )
    return report.activated_points


async def test_pending_points_are_not_spendable_until_activated(server: Running) -> None:
    api = server.api
    member = await api.member()
    await create_rule(server, "bonus", BONUS, bonus_points=20)
    until = datetime.now(UTC) + timedelta(days=7)
    campaign = await api.campaign(points_price=100)

    earned = await buy(server, member.id, 10_000, "order-1", pending_until=ts(until))

    assert earned.pending and earned.ledger_entry_id == "" and earned.points == 120
    assert abs(earned.pending_until.ToDatetime(UTC) - until) < timedelta(milliseconds=1)
    balance = await api.balance(member.id)
    assert (balance.balance, balance.available, balance.pending) == (0, 0, 120)
    assert abs(balance.pending_until.ToDatetime(UTC) - until) < timedelta(milliseconds=1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(member.id, campaign.id)
    assert failure(refused.value).reason == "INSUFFICIENT_POINTS"
    assert await activate(server, until - timedelta(seconds=1)) == 0

    assert await activate(server, until) == 120

    after = await api.balance(member.id)
    assert (after.balance, after.pending, after.lifetime_earned) == (120, 0, 120)
    assert not after.HasField("pending_until")
    assert await activate(server, until + timedelta(days=1)) == 0  # once only
    await api.redeem(member.id, campaign.id)
    assert (await api.balance(member.id)).balance == 20
    page = await api.members.ListLedgerEntries(
        member_pb2.ListLedgerEntriesRequest(
            member_id=member.id, kinds=[member_pb2.LEDGER_ENTRY_KIND_EARN]
        )
    )
    assert [(e.amount, e.reference, len(e.earn_rule_ids)) for e in page.entries] == [
        (120, "purchase:order-1", 1)
    ]
    replay = await buy(server, member.id, 10_000, "order-1", pending_until=ts(until))
    assert replay.replayed and not replay.pending and replay.points == 120
    await assert_ledger_holds(server, member.id)
    assert (await settled_audit(server)).ok


async def test_a_reversal_before_activation_just_removes_them(server: Running) -> None:
    api = server.api
    member = await api.member()
    until = datetime.now(UTC) + timedelta(days=7)
    await buy(server, member.id, 10_000, "full", pending_until=ts(until))
    await buy(server, member.id, 10_000, "half", pending_until=ts(until))

    full = await api.members.ReversePurchase(
        member_pb2.ReversePurchaseRequest(
            member_id=member.id, purchase_event_id="full", event_id="r1"
        )
    )
    half = await api.members.ReversePurchase(
        member_pb2.ReversePurchaseRequest(
            member_id=member.id, purchase_event_id="half", amount_cents=5_000, event_id="r2"
        )
    )

    assert (full.points_reversed, full.debt_added, full.ledger_entry_id) == (100, 0, "")
    assert (half.points_reversed, half.debt_added) == (50, 0)
    assert (await api.balance(member.id)).pending == 50
    assert await activate(server, until) == 50
    balance = await api.balance(member.id)
    assert (balance.balance, balance.debt, balance.pending, balance.lifetime_earned) == (
        50,
        0,
        0,
        50,
    )
    async with server.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT type, (payload->>'points')::bigint FROM events WHERE subject_id = %s "
            "AND type LIKE 'points.%%' ORDER BY sequence",
            (member.id,),
        )
        events = [(r[0], r[1]) for r in await cur.fetchall()]
    assert events == [
        ("points.pending", 100),
        ("points.pending", 100),
        ("points.pending", -100),
        ("points.pending", -50),
        ("points.earned", None),
    ]
    rest = await api.members.ReversePurchase(
        member_pb2.ReversePurchaseRequest(
            member_id=member.id, purchase_event_id="half", event_id="r3"
        )
    )
    assert (rest.points_reversed, rest.points_taken, rest.debt_added) == (50, 50, 0)
    assert (await api.balance(member.id)).balance == 0
    await assert_ledger_holds(server, member.id)
    assert (await settled_audit(server)).ok


async def test_the_liability_report_counts_pending_points_apart(server: Running) -> None:
    api = server.api
    member = await api.member()
    until = datetime.now(UTC) + timedelta(days=3)
    await buy(server, member.id, 30_000, pending_until=ts(until))
    await buy(server, member.id, 10_000)
    now = datetime.now(UTC)
    request = member_pb2.GetLiabilityReportRequest(
        start_time=ts(now - timedelta(days=1)), end_time=ts(now + timedelta(days=1))
    )

    report = await api.members.GetLiabilityReport(request)

    assert (report.outstanding_points, report.pending_points) == (100, 300)
    assert report.totals.issued == 100
    assert abs(report.next_pending_activation.ToDatetime(UTC) - until) < timedelta(milliseconds=1)
    await activate(server, until)
    after = await api.members.GetLiabilityReport(request)
    assert (after.outstanding_points, after.pending_points) == (400, 0)
    assert not after.HasField("next_pending_activation")


async def test_surge_earn_pending_days_holds_every_purchase(start_server: StartServer) -> None:
    running = await start_with_program(start_server, program(earn_pending_days=14))
    member = await running.api.member()

    earned = await buy(running, member.id, 10_000)
    bad = buy(running, member.id, 10_000, pending_until=ts(datetime.now(UTC) + timedelta(days=400)))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await bad

    assert earned.pending
    left = earned.pending_until.ToDatetime(UTC) - datetime.now(UTC)
    assert timedelta(days=13, hours=23) < left <= timedelta(days=14)
    assert (earned.balance.balance, earned.balance.pending) == (0, 100)
    assert failure(refused.value).field == "pending_until"
    assert (await running.api.balance(member.id)).pending == 100


async def test_two_processes_activating_at_once_post_each_purchase_once(server: Running) -> None:
    members = [await server.api.member() for _ in range(5)]
    until = datetime.now(UTC) + timedelta(days=1)
    for m in members:
        await buy(server, m.id, 10_000, pending_until=ts(until))
    pending = server.app.points.pending

    first, second = await asyncio.gather(
        pending.activate_due(until, limit=3), pending.activate_due(until, limit=5)
    )
    rest = await pending.activate_due(until)

    assert first + second + rest == 500
    for m in members:
        balance = await server.api.balance(m.id)
        assert (balance.balance, balance.pending) == (100, 0)
        await assert_ledger_holds(server, m.id)
    assert (await settled_audit(server)).ok


async def test_one_pass_drains_more_than_a_chunk_and_passes_over_a_failure(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [await server.api.member() for _ in range(5)]
    until = datetime.now(UTC) + timedelta(days=1)
    for m in members:
        await buy(server, m.id, 10_000, event="p-" + m.id, pending_until=ts(until))
    pending = server.app.points.pending
    activate_one = pending._activate
    broken = members[0].id  # the soonest due may fail: the ones after it go on

    async def failing(member_id: str, event: str, now: datetime) -> int:
        if member_id == broken:
            raise psycopg.errors.QueryCanceled("statement timeout")
        return await activate_one(member_id, event, now)

    monkeypatch.setattr(pending, "_activate", failing)
    posted = await pending.activate_due(until, limit=2)  # 5 due: three chunks in one pass
    monkeypatch.undo()
    retried = await pending.activate_due(until)

    assert (posted, retried) == (400, 100)
    for m in members:
        assert (await server.api.balance(m.id)).pending == 0
    assert (await settled_audit(server)).ok
