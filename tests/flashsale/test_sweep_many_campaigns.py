"""A sweep pass asks every watched campaign for its lapsed holds in pipelined round trips,
not one round trip each: with 10^4 campaigns the one-by-one walk took ~6 ms a campaign and a
pass never ended (make bench-scale). Lapsed holds are still settled, and only theirs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

from tests.conftest import StartServer
from tests.factories import key
from tests.flashsale.test_recovery import hold_as_a_dying_process_would

CAMPAIGNS = 12
LAPSED = (0, 5, 11)  # the campaigns with a hold a dead process left


async def test_one_pass_settles_the_lapsed_holds_of_many_campaigns_in_pipelines(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No background passes: the test runs the one it counts.
    running = await start_server(
        sweep_interval_seconds=3600.0, hold_ttl_seconds=0.6, commit_fence_seconds=0.3
    )
    api = running.api
    campaigns = [await api.campaign(units=5, points_price=10) for _ in range(CAMPAIGNS)]
    member = await api.member(points=1_000)
    deadlines = [
        await hold_as_a_dying_process_would(running, member.id, campaigns[i].id, key())
        for i in LAPSED
    ]
    while time.time() * 1000 <= max(deadlines) + 50:  # noqa: ASYNC110
        await asyncio.sleep(0.05)

    asked_one_by_one: list[Any] = []
    for client in (Redis, RedisCluster):
        for command in ("zrange", "zrangebyscore"):
            original = getattr(client, command)

            def counting(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                if not isinstance(self, Pipeline | ClusterPipeline):
                    asked_one_by_one.append(args[0])
                return _original(self, *args, **kwargs)

            monkeypatch.setattr(client, command, counting)

    report = await running.app.sweeper.sweep_once()

    assert asked_one_by_one == []  # every campaign asked through a pipeline
    assert report.released == len(LAPSED)
    for i, campaign in enumerate(campaigns):
        got = await api.get_campaign(campaign.id)
        assert (got.units_held, got.units_remaining) == (0, 5), i
    assert (await api.balance(member.id)).available == 1_000


async def test_the_lapsed_holds_of_one_campaign_settle_together(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = await start_server(
        sweep_interval_seconds=3600.0, hold_ttl_seconds=0.6, commit_fence_seconds=0.3
    )
    api, gate = running.api, running.app.campaign_gate
    campaign = await api.campaign(units=20, points_price=10)
    members = [await api.member(points=10) for _ in range(20)]
    deadlines = [
        await hold_as_a_dying_process_would(running, m.id, campaign.id, key()) for m in members
    ]
    while time.time() * 1000 <= max(deadlines) + 50:  # noqa: ASYNC110
        await asyncio.sleep(0.05)

    in_flight, most = [0], [0]
    resolve = gate.resolve

    async def counting(*args: Any, **kwargs: Any) -> Any:
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        try:
            return await resolve(*args, **kwargs)
        finally:
            in_flight[0] -= 1

    monkeypatch.setattr(gate, "resolve", counting)
    report = await running.app.sweeper.sweep_once()

    assert report.released == 20
    assert most[0] > 1  # settled together, sharing round trips, not one after another
    got = await api.get_campaign(campaign.id)
    assert (got.units_held, got.units_remaining) == (0, 20)
    for m in members:
        assert (await api.balance(m.id)).available == 10


async def test_a_quiet_campaign_is_asked_again_once_a_hold_could_have_lapsed(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = await start_server(
        sweep_interval_seconds=3600.0, hold_ttl_seconds=0.6, commit_fence_seconds=0.3
    )
    api, gate, sweeper = running.api, running.app.campaign_gate, running.app.sweeper
    campaign = await api.campaign(units=5, points_price=10)
    member = await api.member(points=10)
    asked: list[list[str]] = []
    earliest = gate.earliest_holds_many

    async def recording(slots: Any, **kwargs: Any) -> Any:
        asked.append(list(slots))
        return await earliest(slots, **kwargs)

    monkeypatch.setattr(gate, "earliest_holds_many", recording)

    await sweeper.sweep_once()  # no hold: quiet for a hold TTL
    assert asked == [[campaign.id]]
    await sweeper.sweep_once()  # within the TTL: nothing can have lapsed, not asked
    assert asked == [[campaign.id]]

    deadline_ms = await hold_as_a_dying_process_would(running, member.id, campaign.id, key())
    while time.time() * 1000 <= deadline_ms + 50:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    report = await sweeper.sweep_once()  # the hold made after the first pass has lapsed

    assert asked[-1] == [campaign.id]
    assert report.released == 1
    got = await api.get_campaign(campaign.id)
    assert (got.units_held, got.units_remaining) == (0, 5)
    assert (await api.balance(member.id)).available == 10
