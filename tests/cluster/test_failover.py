"""A Redis Cluster primary killed mid-surge (issue 14): its replica is promoted, and the
audit afterwards finds no over-redeemed unit, no lost OK and no hold stuck past its
deadline plus one sweep.

The cluster is this test's own (killing a node of the session's would break the tests
after it). Clients behave as the API asks: UNAVAILABLE is retried with the same idempotency
key until the call's budget runs out, so every OK a client received is recorded and checked
against PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest

from flashsale.audit import RecordedOk, audit, check_recorded
from server.app import App, Stores
from tests import auth
from tests.conftest import TEST_SETTINGS
from tests.factories import Api, failure, key
from tests.local_cluster import LocalCluster, local_cluster

UNITS = 120
MEMBERS = 200
RETRY = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED)
RETRY_BUDGET_S = 40.0  # a failover takes the node timeout (2 s here) plus an election


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    with local_cluster(node_timeout_ms=2000) as cluster:
        yield cluster


async def _redeem_until_answered(
    api: Api, member_id: str, campaign_id: str, oks: list[RecordedOk], refused: list[str]
) -> None:
    """One member's redemption, retried with its key while the answer says to retry
    (UNAVAILABLE; ABORTED: its hold lapsed or the first call is still running)."""
    idempotency_key = key()
    deadline = time.monotonic() + RETRY_BUDGET_S
    while True:
        try:
            reply = await api.redeem(member_id, campaign_id, idem=idempotency_key)
        except grpc.aio.AioRpcError as e:
            if e.code() in RETRY and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                continue
            refused.append(failure(e).reason or e.code().name)
            return
        oks.append(
            RecordedOk(
                member_id=member_id,
                idempotency_key=idempotency_key,
                redemption_id=reply.redemption.id,
                campaign_id=campaign_id,
                quantity=reply.redemption.quantity,
            )
        )
        return


async def test_a_primary_killed_mid_surge_loses_no_ok_and_over_redeems_nothing(
    clean: Stores, own_cluster: LocalCluster
) -> None:
    stores = Stores(clean.database_url, own_cluster.service_url)
    app = App(replace(TEST_SETTINGS), stores)
    port = await app.start()
    channel = auth.channel(f"127.0.0.1:{port}")
    api = Api(channel)
    try:
        campaign = await api.campaign(units=UNITS, points_price=10, limit=1)
        members = [await api.member(points=1_000) for _ in range(MEMBERS)]
        random.shuffle(members)
        oks: list[RecordedOk] = []
        refused: list[str] = []
        before = [
            _redeem_until_answered(api, m.id, campaign.id, oks, refused) for m in members[:60]
        ]
        await asyncio.gather(*before)
        # The primary that owns the campaign's slot goes, mid-sale.
        victim = own_cluster.primary_of("{campaign:" + campaign.id + "}")
        after = [
            asyncio.ensure_future(_redeem_until_answered(api, m.id, campaign.id, oks, refused))
            for m in members[60:]
        ]
        await asyncio.sleep(0.05)
        own_cluster.kill(victim)
        await asyncio.gather(*after)
        promoted = own_cluster.primary_of("{campaign:" + campaign.id + "}")
        assert promoted != victim

        sold = sum(ok.quantity for ok in oks)
        assert sold <= UNITS
        assert len(oks) + len(refused) == MEMBERS
        # Members want more than there is: every unit sells, none is lost to the failover.
        assert sold == UNITS, (sold, sorted(set(refused)))
        assert set(refused) <= {"SOLD_OUT"}, refused

        # No hold outlives its deadline plus one sweep.
        await asyncio.sleep(TEST_SETTINGS.hold_ttl_seconds + TEST_SETTINGS.sweep_interval_seconds)
        await app.sweeper.sweep_once()
        stuck = int(
            (TEST_SETTINGS.sweep_interval_seconds + TEST_SETTINGS.commit_fence_seconds) * 1000
        )
        report = await audit(app.pool, app.redis, settled=True, stuck_after_ms=stuck)
        assert report.ok, report.violations
        assert report.units_committed == sold
        assert await check_recorded(app.pool, oks) == []
    finally:
        await channel.close()
        await app.stop()
