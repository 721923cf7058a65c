"""Leadership: several servers on one PostgreSQL run the cluster-wide jobs once, in the
process holding the advisory lock, and another takes over when the leader goes."""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
import pytest

from common.leader import LOCK_KEY
from server.app import App, Stores
from tests.conftest import StartServer
from tests.factories import key
from tests.flashsale.test_recovery import hold_as_a_dying_process_would


def _leader_gauge(app: App) -> float | None:
    return app.metrics.registry.get_sample_value("surge_leader")


async def _wait_for_leader(app: App, within_s: float) -> float:
    """Seconds until `app` leads; fails past `within_s`."""
    started = time.monotonic()
    while not app.leadership.leading:
        waited = time.monotonic() - started
        assert waited < within_s, f"no takeover within {within_s:.2f}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_two_servers_one_leader_and_the_other_takes_over_when_it_stops(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="common.leader")
    first, second = (await start_server()).app, (await start_server()).app
    interval = first.settings.sweep_interval_seconds
    await asyncio.sleep(interval * 5)  # several passes of both sweepers

    assert (first.leadership.leading, second.leadership.leading) == (True, False)
    assert (_leader_gauge(first), _leader_gauge(second)) == (1.0, 0.0)
    # Only the leader sweeps holds and runs the ledger jobs; the follower's sweeper loop
    # still runs its own part (its gauges are fresh).
    assert first.sweeper.passes >= 3
    assert second.sweeper.passes == 0
    assert second.metrics.registry.get_sample_value(
        "surge_sweeper_last_run_timestamp_seconds"
    ) == pytest.approx(time.time(), abs=interval * 3)
    assert first.ledger_jobs._task is not None and second.ledger_jobs._task is None
    assert [r.message for r in caplog.records].count(
        f"leader: {first.leadership.name} runs the background jobs (advisory lock {LOCK_KEY})"
    ) == 1

    await first.stop()
    first.server = None  # stopped: the fixture must not stop it again
    waited = await _wait_for_leader(second, within_s=2 * interval + 0.1)
    assert waited <= 2 * interval + 0.1
    assert _leader_gauge(first) == 0.0 and _leader_gauge(second) == 1.0
    assert second.ledger_jobs._task is not None
    passes = second.sweeper.passes
    await asyncio.sleep(interval * 3)
    assert second.sweeper.passes > passes
    assert sum("no longer leads (stopping)" in r.message for r in caplog.records) == 1


async def test_a_leader_that_loses_its_lock_connection_steps_down_and_stops_its_jobs(
    start_server: StartServer, clean: Stores
) -> None:
    running = await start_server()
    app = running.app
    interval = app.settings.sweep_interval_seconds
    assert app.leadership.leading
    # Cut the lock's session from the server side, as a failover or a network cut would;
    # found as docs/runbook.md (Which process leads) finds it.
    async with await psycopg.AsyncConnection.connect(clean.database_url, autocommit=True) as c:
        holders = await (
            await c.execute(
                "SELECT a.pid, a.application_name FROM pg_locks l "
                "JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' "
                "AND l.granted AND (l.classid::bigint << 32 | l.objid::bigint) = %s",
                (LOCK_KEY,),
            )
        ).fetchall()
        assert [name for _, name in holders] == ["surge-leader"]
        await c.execute("SELECT pg_terminate_backend(%s)", (holders[0][0],))
    # It notices at its next check, steps down and, the lock being free, takes it again at
    # the check after: the ledger jobs stopped in between and run again.
    deadline = time.monotonic() + 2 * interval + 0.1
    stepped_down = False
    while not stepped_down and time.monotonic() < deadline:
        await asyncio.sleep(0.002)
        stepped_down = app.ledger_jobs._task is None  # set after leading turned False
    assert stepped_down and not app.leadership.leading
    assert _leader_gauge(app) == 0.0
    await _wait_for_leader(app, within_s=2 * interval + 0.1)
    assert app.ledger_jobs._task is not None


async def test_a_follower_leaves_a_lapsed_hold_to_the_leader(start_server: StartServer) -> None:
    leader, follower = await start_server(), await start_server()
    assert leader.app.leadership.leading and not follower.app.leadership.leading
    await leader.app.sweeper.stop()  # the leader is wedged: nobody sweeps holds
    campaign = await follower.api.campaign(units=1, points_price=100)
    member = await follower.api.member(points=100)
    deadline_ms = await hold_as_a_dying_process_would(follower, member.id, campaign.id, key())
    interval = follower.app.settings.sweep_interval_seconds
    await asyncio.sleep(max(0.0, deadline_ms / 1000 - time.time()) + 3 * interval)
    assert (await follower.api.get_campaign(campaign.id)).units_held == 1
    assert follower.app.sweeper.passes == 0
    await follower.app.sweeper.sweep_once()  # what the leader's pass does
    assert (await follower.api.get_campaign(campaign.id)).units_held == 0
