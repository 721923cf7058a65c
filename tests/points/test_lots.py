"""Lots and expiry: every credit is a lot, spends take the soonest expiry first, refunds
put points back where they came from, and expiry removes only what remains of a lot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from loyalty.v1 import common_pb2, redemption_pb2
from points.jobs import LedgerJobs
from points.program import add_months
from tests.conftest import Running
from tests.factories import failure
from tests.flashsale.helpers import settled_audit
from tests.points.helpers import assert_ledger_holds, earn, lots_of, set_lot_expiry

# Cancellable after commit: no code is issued (a virtual good's code is final).
SERVICE = common_pb2.ITEM_KIND_SERVICE


async def test_an_earn_is_a_lot_with_the_program_expiry(server: Running) -> None:
    member = await server.api.member()
    before = datetime.now(UTC)
    idem = await earn(server, member.id, 300)

    [(reference, amount, remaining, expires_at)] = await lots_of(server, member.id)

    assert (reference, amount, remaining) == (f"earn:{idem}", 300, 300)
    assert expires_at is not None
    assert add_months(before, 12) <= expires_at <= add_months(datetime.now(UTC), 12)
    balance = await server.api.balance(member.id)
    assert (balance.balance, balance.lifetime_earned, balance.qualifying_points) == (300, 300, 300)
    assert balance.tier == "base" and balance.redemption_eligible and not balance.frozen
    await assert_ledger_holds(server, member.id)


async def test_spends_take_the_soonest_expiry_first_and_refunds_restore_it(
    server: Running,
) -> None:
    api = server.api
    member = await api.member()
    late, soon = await earn(server, member.id, 500), await earn(server, member.id, 500)
    now = datetime.now(UTC)
    await set_lot_expiry(server, member.id, f"earn:{late}", now + timedelta(days=300))
    await set_lot_expiry(server, member.id, f"earn:{soon}", now + timedelta(days=10))
    campaign = await api.campaign(points_price=300, limit=5, kind=SERVICE)

    first = (await api.redeem(member.id, campaign.id)).redemption
    await api.redeem(member.id, campaign.id)  # 300 more: the soon lot's 200, then 100 late
    after_spends = await lots_of(server, member.id)
    await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(redemption_id=first.id, member_id=member.id)
    )
    after_cancel = await lots_of(server, member.id)

    assert [(r, left) for r, _, left, _ in after_spends] == [
        (f"earn:{soon}", 0),
        (f"earn:{late}", 400),
    ]
    # The first redemption took 300 of the soon lot: they go back there, expiry unchanged.
    assert [(r, left) for r, _, left, _ in after_cancel] == [
        (f"earn:{soon}", 300),
        (f"earn:{late}", 400),
    ]
    await assert_ledger_holds(server, member.id)
    assert (await settled_audit(server)).ok


async def test_expiry_on_the_exact_boundary_instant(server: Running) -> None:
    member = await server.api.member()
    idem = await earn(server, member.id, 700)
    await earn(server, member.id, 50)
    boundary = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    await set_lot_expiry(server, member.id, f"earn:{idem}", boundary)
    jobs = LedgerJobs(server.app.pool, server.app.points)

    before = await jobs.run_once(boundary - timedelta(microseconds=1), evaluate_tiers=False)
    at = await jobs.run_once(boundary, evaluate_tiers=False)
    again = await jobs.run_once(boundary + timedelta(days=1), evaluate_tiers=False)

    assert before.expired_points == 0
    assert (at.expired_points, at.expired_members) == (700, 1)
    assert again.expired_points == 0  # idempotent: nothing is left of the lot
    ledger = await assert_ledger_holds(server, member.id)
    assert ledger.balance == 50
    balance = await server.api.balance(member.id)
    assert (balance.available, balance.lifetime_earned) == (50, 750)


async def test_expired_points_are_never_spent_even_before_the_job_runs(server: Running) -> None:
    api = server.api
    member = await api.member()
    idem = await earn(server, member.id, 1000)
    await set_lot_expiry(
        server, member.id, f"earn:{idem}", datetime.now(UTC) - timedelta(seconds=1)
    )
    campaign = await api.campaign(points_price=100)

    # Redis still counts the points (the job has not run): PostgreSQL expires them first.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(member.id, campaign.id)

    assert failure(refused.value).reason == "INSUFFICIENT_POINTS"
    ledger = await assert_ledger_holds(server, member.id)
    assert ledger.balance == 0
    assert (await settled_audit(server)).ok


async def test_points_waiting_for_payment_are_spared_by_expiry(server: Running) -> None:
    api = server.api
    member = await api.member()
    idem = await earn(server, member.id, 1000)
    campaign = await api.campaign(points_price=400, cash_price_cents=100)
    pending = (await api.redeem(member.id, campaign.id)).redemption
    await set_lot_expiry(
        server, member.id, f"earn:{idem}", datetime.now(UTC) - timedelta(seconds=1)
    )

    run = await LedgerJobs(server.app.pool, server.app.points).run_once(evaluate_tiers=False)
    spared = await assert_ledger_holds(server, member.id)
    confirmed = await api.redemptions.ConfirmPayment(
        redemption_pb2.ConfirmPaymentRequest(
            redemption_id=pending.id,
            member_id=member.id,
            payment_reference="p-1",
            amount_cents=pending.cash_total_cents,
            currency="CNY",
        )
    )

    assert run.expired_points == 600
    assert (spared.balance, spared.held) == (400, 400)
    assert confirmed.status == redemption_pb2.REDEMPTION_STATUS_COMMITTED
    assert (await assert_ledger_holds(server, member.id)).balance == 0
    assert (await settled_audit(server)).ok


async def test_the_balance_shows_what_expires_soon(server: Running) -> None:
    member = await server.api.member()
    soon, later = await earn(server, member.id, 120), await earn(server, member.id, 80)
    now = datetime.now(UTC)
    await set_lot_expiry(server, member.id, f"earn:{soon}", now + timedelta(days=29))
    await set_lot_expiry(server, member.id, f"earn:{later}", now + timedelta(days=31))

    balance = await server.api.balance(member.id)

    assert balance.expiring_soon == 120
    horizon = balance.expiring_before.ToDatetime(tzinfo=UTC)
    # Through the end of the 30th day from now.
    assert horizon - timedelta(days=1) <= now + timedelta(days=30) < horizon
    assert (horizon.hour, horizon.minute, horizon.second) == (0, 0, 0)


async def test_the_audit_catches_a_lot_that_disagrees_with_the_balance(server: Running) -> None:
    from flashsale.audit import audit

    member = await server.api.member()
    idem = await earn(server, member.id, 100)
    async with server.app.pool.connection() as conn:
        await conn.execute(
            "UPDATE point_lots SET remaining = 90 WHERE reference = %s", (f"earn:{idem}",)
        )
        await conn.execute("UPDATE members SET points_debt = 5 WHERE id = %s", (member.id,))

    report = await audit(server.app.pool, server.app.redis, settled=False)

    assert any("lots' remainders" in v for v in report.violations), report.violations
    assert any("debt" in v for v in report.violations), report.violations


async def test_a_member_state_without_the_eligible_flag_is_loaded_again(server: Running) -> None:
    from points.gate import member_keys

    api = server.api
    member = await api.member(points=500)
    await server.app.redis.hdel(member_keys(member.id)[0], "eligible")  # an older deployment's
    campaign = await api.campaign(points_price=100)

    redeemed = await api.redeem(member.id, campaign.id)

    assert redeemed.redemption.points_total == 100
    assert (await assert_ledger_holds(server, member.id)).redis_eligible == 1


async def test_the_ledger_jobs_loop_starts_and_stops(server: Running) -> None:
    import asyncio

    member = await server.api.member()
    idem = await earn(server, member.id, 40)
    await set_lot_expiry(
        server, member.id, f"earn:{idem}", datetime.now(UTC) - timedelta(seconds=1)
    )
    jobs = LedgerJobs(server.app.pool, server.app.points, interval_s=0.05)

    jobs.start()
    for _ in range(100):
        if (await server.api.balance(member.id)).balance == 0:
            break
        await asyncio.sleep(0.05)
    await jobs.stop()

    assert (await assert_ledger_holds(server, member.id)).balance == 0
    async with server.app.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM ledger_jobs WHERE name = 'tiers'")
        claimed = await cur.fetchone()
    assert claimed == (1,)  # the first pass claimed the daily tier run
