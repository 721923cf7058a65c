"""The event stream under SIGKILL of the server mid-surge (issue 15, done-when): a consumer
that resumes from its last sequence on the restarted server sees exactly one
redemption.committed per committed redemption (after de-duplication by sequence), none for
a refusal, and every event of the table."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import psycopg

from loyalty.v1 import common_pb2
from server.app import Stores
from tests import auth
from tests.auth import TEST_SECRET
from tests.events.helpers import Watcher, payload
from tests.factories import ADDRESS, Api, failure
from tests.server.test_multiprocess import _free_port, _serving


async def _serve(stores: Stores, port: int, log: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "DATABASE_URL": stores.database_url,
        "REDIS_URL": stores.redis_url,
        "SURGE_JWT_SECRET": TEST_SECRET.decode(),
        "SURGE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SURGE_METRICS_PORT": "0",
        "SURGE_ACCESS_LOG": "off",
        "SURGE_DRAIN_SECONDS": "0",
        "SURGE_SWEEP_INTERVAL_SECONDS": "0.5",
        "SURGE_HOLD_TTL_SECONDS": "3",
        "SURGE_COMMIT_FENCE_SECONDS": "1",
    }
    with log.open("ab") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "serve", env=env, stdout=sink, stderr=sink
        )
    await _serving(port)
    return process


class Consumer:
    """Keeps its last sequence; on any break, reconnects and resumes after it."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.seen: dict[int, Any] = {}
        self.received = 0
        self.breaks = 0
        self.last = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            channel = grpc.aio.insecure_channel(self.target)
            watcher = Watcher(channel, self.last)
            try:
                while True:
                    (event,) = await watcher.take(1, timeout_s=3600)
                    self.received += 1
                    self.seen.setdefault(event.sequence, event)
                    self.last = max(self.last, event.sequence)
            except grpc.aio.AioRpcError:
                self.breaks += 1
                await asyncio.sleep(0.2)  # the server went away: resume after self.last
            finally:
                await watcher.close()
                await channel.close()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_a_resuming_consumer_sees_each_commit_once_across_a_sigkill(
    clean: Stores, tmp_path: Path
) -> None:
    port = _free_port()
    target = f"127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    server = await _serve(clean, port, log)
    consumer = Consumer(target)
    try:
        async with auth.channel(target) as channel:
            api = Api(channel)
            campaign = await api.campaign(
                units=40, points_price=10, limit=5, kind=common_pb2.ITEM_KIND_PHYSICAL
            )
            members = [(await api.member(points=100)).id for _ in range(20)]

            async def surge(rounds: int) -> list[Any]:
                calls = [
                    api.redeem(m, campaign.id, shipping_address=ADDRESS)
                    for _ in range(rounds)
                    for m in members
                ]
                return await asyncio.gather(*calls, return_exceptions=True)

            first = asyncio.create_task(surge(2))
            await asyncio.sleep(0.15)
            server.send_signal(signal.SIGKILL)  # mid-surge
            await server.wait()
            await first
        server = await _serve(clean, port, log)
        async with auth.channel(target) as channel:
            api = Api(channel)
            after_restart = await surge(2)  # sells out: the rest are refusals
        await asyncio.sleep(4)  # the sweeper settles what the kill left; the consumer catches up
    finally:
        await consumer.stop()
        if server.returncode is None:
            server.terminate()
        await asyncio.wait_for(server.wait(), 20)

    async with await psycopg.AsyncConnection.connect(clean.database_url) as conn:
        cur = await conn.execute("SELECT id::text FROM redemptions WHERE status = 'COMMITTED'")
        committed = sorted(r[0] for r in await cur.fetchall())
        cur = await conn.execute("SELECT sequence FROM events ORDER BY sequence")
        sequences = [r[0] for r in await cur.fetchall()]
    per_redemption = Counter(
        payload(e)["redemption_id"]
        for e in consumer.seen.values()
        if e.type == "redemption.committed"
    )
    assert sorted(consumer.seen) == sequences  # every event, none invented
    assert sorted(per_redemption) == committed and set(per_redemption.values()) == {1}
    # 160 calls for 40 units (some held by the killed server until the sweeper frees them):
    # refusals happened, and none of them has an event (the set equality above).
    refusals = [
        r
        for r in after_restart
        if isinstance(r, grpc.aio.AioRpcError) and failure(r).reason == "SOLD_OUT"
    ]
    assert refusals and 0 < len(committed) <= 40
    assert consumer.received >= len(sequences) and consumer.breaks >= 1  # it did resume
