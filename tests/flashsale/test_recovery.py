"""Crashes and lost Redis state: no stuck holds, no over-redemption, retries work."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from flashsale import idempotency
from flashsale.audit import audit
from flashsale.gate import Outcome, Reserve, hold_id
from flashsale.rebuild import rebuild_cache
from loyalty.v1 import redemption_pb2
from points.gate import Hold
from tests.conftest import Running
from tests.factories import failure, key
from tests.flashsale.helpers import outcomes, settled_audit


async def hold_as_a_dying_process_would(
    running: Running, member_id: str, campaign_id: str, idem: str, *, quantity: int = 1
) -> int:
    """Steps 2 and 3 of a redemption, then nothing: the process that took them is gone."""
    app = running.app
    meta = await app.campaigns.meta(campaign_id)
    fingerprint = idempotency.fingerprint(member_id, campaign_id, quantity, None)
    units = await app.campaign_gate.reserve(
        campaign_id,
        member_id,
        hold_id(member_id, idem),
        quantity=quantity,
        fingerprint=fingerprint,
        hold_ttl_ms=int(app.settings.hold_ttl_seconds * 1000),
    )
    assert units.code is Reserve.HELD
    deadline_ms = int(units.values[0])
    points = await app.points_gate.hold(
        member_id,
        hold_id(member_id, idem),
        meta.points_price * quantity,
        deadline_ms=deadline_ms,
        campaign_id=campaign_id,
    )
    assert points.code is Hold.HELD
    return deadline_ms


async def test_a_hold_left_by_a_killed_process_is_released_within_deadline_plus_one_sweep(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(units=1, points_price=100)
    member = await api.member(points=100)
    idem = key()
    deadline_ms = await hold_as_a_dying_process_would(server, member.id, campaign.id, idem)
    held = await api.get_campaign(campaign.id)
    assert (held.units_held, (await api.balance(member.id)).available) == (1, 0)

    settings = server.app.settings
    limit = deadline_ms / 1000 + settings.sweep_interval_seconds + 0.5  # + scheduling slack
    while (await api.get_campaign(campaign.id)).units_held and time.time() < limit + 1:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    released_at = time.time()

    assert released_at <= limit
    assert (await api.get_campaign(campaign.id)).units_remaining == 1
    assert (await api.balance(member.id)).available == 100
    # The client retries with the same key: it works, once.
    retried = await api.redeem(member.id, campaign.id, idem=idem)
    assert not retried.replayed and retried.redemption.quantity == 1
    assert (
        await api.redeem(member.id, campaign.id, idem=idem)
    ).redemption.id == retried.redemption.id
    assert (await settled_audit(server)).ok


async def test_a_retry_before_the_deadline_completes_the_orphaned_hold(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=1, points_price=100)
    member = await api.member(points=100)
    idem = key()
    await hold_as_a_dying_process_would(server, member.id, campaign.id, idem)

    retried = await api.redeem(member.id, campaign.id, idem=idem)

    assert retried.redemption.quantity == 1
    balance = await api.balance(member.id)
    assert (balance.balance, balance.held) == (0, 0)
    assert (await settled_audit(server)).ok


async def test_a_hold_committed_before_the_crash_is_settled_not_released(server: Running) -> None:
    """The process died after PostgreSQL committed but before Redis heard: the sweeper
    must see the redemption in PostgreSQL and keep the units sold."""
    api = server.api
    await server.app.sweeper.stop()  # this test sweeps by hand, to see what the pass did
    campaign = await api.campaign(units=1, points_price=100)
    member = await api.member(points=100)
    idem = key()
    await hold_as_a_dying_process_would(server, member.id, campaign.id, idem)
    original = server.app.settler.settle_batch

    async def lost(pairs: object) -> None:
        raise ConnectionError("process died before settling Redis")

    server.app.committer._after_commit = lost
    try:
        await api.redeem(member.id, campaign.id, idem=idem)
    finally:
        server.app.committer._after_commit = original
    await asyncio.sleep(server.app.settings.hold_ttl_seconds + 0.1)

    held_in_redis = await server.app.redis.hget("{campaign:" + campaign.id + "}", "held")
    shown = await api.get_campaign(campaign.id)
    report = await server.app.sweeper.sweep_once()

    assert int(held_in_redis or 0) == 1  # Redis never heard of the commit...
    assert (shown.units_committed, shown.units_held) == (1, 0)  # ...and it is not counted twice
    assert report.committed == 1 and report.released == 0
    after = await api.get_campaign(campaign.id)
    assert (after.units_committed, after.units_remaining, after.units_held) == (1, 0, 0)
    assert (await api.balance(member.id)).available == 0
    assert (await settled_audit(server)).ok


async def test_redis_flushed_mid_sale_with_rebuild_sells_no_more_than_allotted(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(units=30, limit=2)
    members = [await api.member(points=10_000) for _ in range(40)]
    first_half = [api.redeem(m.id, campaign.id) for m in members[:20]]
    ok1, _ = await outcomes(first_half)
    replay_key = ok1[0].redemption.idempotency_key
    replay_member = ok1[0].redemption.member_id

    await server.app.redis.flushall()
    report = await rebuild_cache(
        server.app.pool,
        server.app.campaigns,
        server.app.points_gate,
        ended_within=__import__("datetime").timedelta(hours=1),
    )
    ok2, refused = await outcomes(api.redeem(m.id, campaign.id) for m in members for _ in range(2))

    assert report.campaigns_created == 1 and report.members == 40
    assert sum(r.redemption.quantity for r in ok1 + ok2) == 30
    assert set(refused) <= {"SOLD_OUT", "LIMIT_EXCEEDED"}
    replay = await api.redeem(replay_member, campaign.id, idem=replay_key)
    assert replay.replayed and replay.redemption.id == ok1[0].redemption.id
    assert (await settled_audit(server)).ok


async def test_redis_flushed_mid_sale_is_detected_without_a_rebuild(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=30, limit=2)
    members = [await api.member(points=10_000) for _ in range(40)]
    ok1, _ = await outcomes(api.redeem(m.id, campaign.id) for m in members[:20])

    await server.app.redis.flushall()
    ok2, refused = await outcomes(api.redeem(m.id, campaign.id) for m in members for _ in range(2))

    assert sum(r.redemption.quantity for r in ok1 + ok2) == 30
    assert set(refused) <= {"SOLD_OUT", "LIMIT_EXCEEDED"}
    assert (await settled_audit(server)).ok


async def test_postgresql_guards_hold_when_redis_is_wrong(server: Running) -> None:
    """Redis claims plenty of stock and points; PostgreSQL's guards still refuse."""
    api = server.api
    campaign = await api.campaign(units=3, points_price=100, limit=10)
    member = await api.member(points=10_000)
    await api.redeem(member.id, campaign.id, quantity=3)
    client = server.app.redis
    tag = "{campaign:" + campaign.id + "}"
    await client.hset(tag, mapping={"taken": 0, "tver": 10**9})  # a lying mirror, "newest"

    ok, refused = await outcomes(api.redeem(member.id, campaign.id) for _ in range(5))

    assert not ok and refused == {"SOLD_OUT": 5}
    async with server.app.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT units_committed FROM campaigns WHERE id = %s", (campaign.id,)
            )
        ).fetchone()
    assert row == (3,)


async def test_a_not_active_refusal_from_postgresql_is_not_saved(server: Running) -> None:
    """CAMPAIGN_NOT_ACTIVE is never saved (a gateway may retry the key once the sale opens),
    also when PostgreSQL says it because Redis's window was behind."""
    api = server.api
    campaign = await api.campaign(units=3, points_price=100)
    member = await api.member(points=1000)
    await api.redeem(member.id, campaign.id)  # Redis and this process now know the window
    async with server.app.pool.connection() as conn:
        await conn.execute(
            "UPDATE campaigns SET starts_at = now() + interval '1 hour', "
            "ends_at = now() + interval '2 hours' WHERE id = %s",
            (campaign.id,),
        )

    with pytest.raises(grpc.aio.AioRpcError) as early:
        await api.redeem(member.id, campaign.id, idem="early-bird")
    async with server.app.pool.connection() as conn:
        await conn.execute(
            "UPDATE campaigns SET starts_at = now() - interval '1 minute' WHERE id = %s",
            (campaign.id,),
        )
    opened = await api.redeem(member.id, campaign.id, idem="early-bird")

    assert failure(early.value).reason == "CAMPAIGN_NOT_ACTIVE"
    assert not opened.replayed
    assert opened.redemption.status == redemption_pb2.REDEMPTION_STATUS_COMMITTED


async def test_a_lapsed_hold_is_settled_by_its_own_campaigns_redemption_only(
    server: Running,
) -> None:
    """A key committed on campaign A says nothing about a hold with that key on campaign B:
    the sweeper releases B's hold, and A's counters never land on B."""
    api = server.api
    first, second = await api.campaign(units=3), await api.campaign(units=3)
    member = await api.member(points=1000)
    await api.redeem(member.id, first.id, idem="shared-key")
    await hold_as_a_dying_process_would(server, member.id, second.id, "shared-key")

    await asyncio.sleep(server.app.settings.hold_ttl_seconds + 0.1)
    await server.app.sweeper.sweep_once()  # or the server's own sweeper got there first

    after = await api.get_campaign(second.id)
    assert (after.units_remaining, after.units_held, after.units_committed) == (3, 0, 0)
    assert (await api.balance(member.id)).available == 900
    # Redis agrees: all three units of the second campaign are still for sale.
    buyer = await api.member(points=1000)
    assert (await api.redeem(buyer.id, second.id, quantity=3)).redemption.quantity == 3


async def test_a_sweep_pass_settles_a_bounded_number_of_holds_per_campaign(
    server: Running,
) -> None:
    """Holds that piled up (a crash mid-surge) are settled oldest first, a bounded batch per
    pass, with one PostgreSQL lookup per batch."""
    from flashsale.sweeper import HOLDS_PER_CAMPAIGN_PER_PASS as batch

    api = server.api
    campaign = await api.campaign(units=batch + 20, limit=batch + 20)
    member = await api.member()
    # This test does the passes itself: a background pass while the lapsed holds are being
    # made would settle some of them first.
    await server.app.sweeper.stop()
    for i in range(batch + 20):
        reserved = await server.app.campaign_gate.reserve(
            campaign.id,
            member.id,
            hold_id(member.id, f"piled-{i}"),
            quantity=1,
            fingerprint="f",
            hold_ttl_ms=-60_000 + i,  # lapsed a minute ago, the first ones first
        )
        assert reserved.code is Reserve.HELD

    first = await server.app.sweeper.sweep_once()
    second = await server.app.sweeper.sweep_once()

    assert (first.released, second.released) == (batch, 20)
    assert (await api.get_campaign(campaign.id)).units_held == 0


async def test_a_points_hold_whose_settle_was_lost_frees_its_points_at_its_deadline(
    server: Running,
) -> None:
    """A process killed between the campaign's resolve and the member's settle leaves a
    points hold with nothing behind it: the audit names it while it is in force, and at its
    deadline it counts for nothing (the next hold drops it), without a rebuild."""
    api, app = server.api, server.app
    campaign = await api.campaign(units=5, points_price=100)
    member = await api.member(points=100)
    idem = key()
    await hold_as_a_dying_process_would(server, member.id, campaign.id, idem)
    # The campaign's side is resolved (released), the member's settle never happens.
    await app.campaign_gate.resolve(
        campaign.id, member.id, hold_id(member.id, idem), fingerprint="", outcome=Outcome.RELEASE
    )

    report = await audit(app.pool, app.redis, settled=False)
    assert any("points hold" in v and "neither" in v for v in report.violations)

    await asyncio.sleep(app.settings.hold_ttl_seconds + 0.2)
    redeemed = await api.redeem(member.id, campaign.id)

    assert redeemed.redemption.points_total == 100
    assert (await api.balance(member.id)).balance == 0
    assert (await audit(app.pool, app.redis, settled=False)).ok


async def test_a_retry_after_the_deadline_of_a_committed_key_replays_it(server: Running) -> None:
    """reserve.lua meets a key whose hold lapsed before the sweeper came, and the key was in
    fact committed (its settle was lost). Meanwhile the campaign sold its last unit. The
    retry must replay the redemption: never save SOLD_OUT for a committed key, never leave
    the lapsed hold's points hold behind."""
    api, app = server.api, server.app
    await app.sweeper.stop()  # the retry, not the sweeper, meets the lapsed hold
    campaign = await api.campaign(units=2, points_price=100)
    member, other = await api.member(points=100), await api.member(points=100)
    original = app.settler.settle_batch

    async def lost(pairs: object) -> None:
        raise ConnectionError("process died before settling Redis")

    app.committer._after_commit = lost
    try:
        first = await api.redeem(member.id, campaign.id, idem="K")  # committed, not settled
    finally:
        app.committer._after_commit = original
    await api.redeem(other.id, campaign.id)  # the last unit; its settle mirrors taken = 2
    await asyncio.sleep(app.settings.hold_ttl_seconds + 0.1)

    retry = await api.redeem(member.id, campaign.id, idem="K")

    assert retry.replayed and retry.redemption.id == first.redemption.id
    again = await api.redeem(member.id, campaign.id, idem="K")
    assert again.replayed and again.redemption.id == first.redemption.id
    await app.sweeper.sweep_once()
    assert (await audit(app.pool, app.redis, settled=True)).ok
