"""WatchEvents: replay then follow, type filter, bad arguments, pruned sequences, scopes,
and a consumer that disconnects and resumes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import psycopg
import pytest

from loyalty.v1 import common_pb2
from server import scopes
from tests.conftest import Running
from tests.events.helpers import Watcher, call, everything, payload
from tests.factories import ADDRESS, failure

PHYSICAL = common_pb2.ITEM_KIND_PHYSICAL


async def test_replay_then_follow_live_with_a_type_filter(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=10, points_price=100, kind=PHYSICAL)
    member = await api.member(points=1000)
    first = (await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)).redemption
    watcher = Watcher(server.channel, 0, types=("redemption.committed",))
    try:
        replayed = await watcher.take(1)
        assert await watcher.quiet()  # points.spent / points.earned are filtered out
        second = (await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)).redemption
        live = await watcher.take(1, timeout_s=5.0)
    finally:
        await watcher.close()
    assert payload(replayed[0])["redemption_id"] == first.id
    assert payload(live[0])["redemption_id"] == second.id
    assert live[0].sequence > replayed[0].sequence


@pytest.mark.parametrize(
    ("after", "types", "field"),
    [(-1, (), "after_sequence"), (0, ("redemption.committed", "redemption.teleported"), "types")],
)
async def test_bad_arguments_name_the_field(
    server: Running, after: int, types: tuple[str, ...], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(server.channel, after, types).read()
    f = failure(raised.value)
    assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, field)


async def test_a_scope_without_watch_events_is_refused(server: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(server.channel, scope_names=(scopes.STOREFRONT,)).read()
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for allowed in (scopes.OPERATOR, scopes.REPORTS, scopes.FULFILMENT):
        assert await everything(server.channel, scope_names=(allowed,)) == []


async def test_a_sequence_older_than_retention_is_refused_naming_the_oldest(
    server: Running,
) -> None:
    api = server.api
    for points in (10, 20, 30):
        await api.member(points=points)
    events = await everything(server.channel)
    assert len(events) == 3
    async with await psycopg.AsyncConnection.connect(
        server.app.stores.database_url, autocommit=True
    ) as conn:
        await conn.execute(
            "UPDATE events SET occurred_at = now() - interval '8 days' WHERE sequence <= %s",
            (events[1].sequence,),
        )
    assert server.app.leadership.leading  # the one process here leads, so it prunes
    assert server.app.event_stream._pruner is not None
    server.app.event_stream.retention = timedelta(days=7)
    assert await server.app.event_stream.prune_once() == 2
    assert await server.app.event_stream.prune_once() == 0  # nothing more is due

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(server.channel, events[0].sequence).read()
    f = failure(raised.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "EVENTS_PRUNED")
    assert f.metadata["oldest_sequence"] == str(events[1].sequence + 1)
    # From the watermark on, the rest is there.
    kept = await everything(server.channel, events[1].sequence)
    assert [e.sequence for e in kept] == [events[2].sequence]


async def test_a_consumer_that_disconnects_and_resumes_sees_each_event_once(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(units=40, points_price=10, kind=PHYSICAL, limit=40)
    members = [await api.member(points=1000) for _ in range(4)]
    seen: dict[int, str] = {}
    last = 0

    async def redeem_some(n: int) -> list[str]:
        results = await asyncio.gather(
            *(
                api.redeem(members[i % 4].id, campaign.id, shipping_address=ADDRESS)
                for i in range(n)
            )
        )
        return [r.redemption.id for r in results]

    committed = await redeem_some(6)
    for _ in range(3):  # connect, take a few, drop the connection mid-stream, resume
        watcher = Watcher(server.channel, last)
        got = await watcher.take(3)
        await watcher.close()
        for event in got:
            seen.setdefault(event.sequence, event.type)
            last = event.sequence
        committed += await redeem_some(4)
    for event in await everything(server.channel, last):
        seen.setdefault(event.sequence, event.type)
    await asyncio.sleep(0.2)
    assert server.app.metrics.events_watchers._value.get() == 0  # no watcher leaked

    all_now = {e.sequence: e for e in await everything(server.channel)}
    assert seen == {s: e.type for s, e in all_now.items()}
    redemptions = [
        payload(e)["redemption_id"] for e in all_now.values() if e.type == "redemption.committed"
    ]
    assert sorted(redemptions) == sorted(committed)


async def test_open_streams_end_unavailable_when_the_server_stops(server: Running) -> None:
    await server.api.member(points=5)
    watchers = [Watcher(server.channel, 0) for _ in range(3)]
    for w in watchers:
        await w.take(1)
    assert server.app.metrics.events_watchers._value.get() == 3
    started = asyncio.get_running_loop().time()
    await server.app.stop()
    took = asyncio.get_running_loop().time() - started
    for w in watchers:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await w.take(1)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        await w.close()
    assert took < server.app.settings.shutdown_grace_seconds  # they did not hold it up
