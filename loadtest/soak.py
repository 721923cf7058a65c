"""`make soak`: does Redis memory stay flat under a steady surge? (DESIGN-NOTES invariant 9)

A private Redis + PostgreSQL and one `surge serve` with short retentions (a refusal is
remembered 60 s, a campaign's keys 60 s after its sale), then a steady rate of Redeem calls,
each with a fresh idempotency key, for a few minutes: mostly refusals on a sold-out
campaign (the flood of a real sale) and a second campaign that ends halfway. Every
`--every` seconds it prints Redis's key count and used memory, and at the end the growth per
10,000 calls over the second half of the run: near zero when every key has an end, linear
when records outlive the retry window.

    python -m loadtest.soak --minutes 10 --rate 200
    python -m loadtest.soak --server-python /path/to/other/checkout/.venv/bin/python

`--server-python` serves from another checkout (its interpreter, run in its folder), to
measure an older version with this client: the API is the same on the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import redis.asyncio

from loadtest import credentials
from loadtest.run import Server, free_port, say, stores
from loadtest.seed import timestamp
from loyalty.v1 import (
    campaign_pb2,
    campaign_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    member_pb2,
    member_pb2_grpc,
    redemption_pb2,
    redemption_pb2_grpc,
)

RETENTION_S = 60
SERVER_SETTINGS = {
    "SURGE_REFUSAL_TTL_SECONDS": str(RETENTION_S),
    "SURGE_CAMPAIGN_KEY_RETENTION_SECONDS": str(RETENTION_S),
    "SURGE_HOLD_TTL_SECONDS": "3",
    "SURGE_COMMIT_FENCE_SECONDS": "1",
    "SURGE_SWEEP_INTERVAL_SECONDS": "0.5",
    "SURGE_ACCESS_LOG": "OFF",
    "SURGE_DRAIN_SECONDS": "0",  # nothing in front to tell before stopping
}
MEMBERS = 500


class OtherServer(Server):
    """`surge serve` from another checkout: its interpreter, in its folder."""

    def __init__(self, env: dict[str, str], address: str, log_dir: Path, python: Path) -> None:
        super().__init__(env, address, log_dir)
        self.python = python

    def start(self) -> float:
        began = time.monotonic()
        self.starts += 1
        with (self.log_dir / f"server-{self.starts}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [str(self.python), "-m", "server.cli", "serve"],
                env=self.env,
                cwd=self.python.parent.parent.parent,  # <checkout>/.venv/bin/python
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_serving()
        return time.monotonic() - began


async def _seed(channel: grpc.aio.Channel, minutes: float) -> tuple[str, str, list[str]]:
    """A sold-out campaign lasting the run, one ending halfway, and members with points."""
    catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
    campaigns = campaign_pb2_grpc.CampaignServiceStub(channel)
    members = member_pb2_grpc.MemberServiceStub(channel)
    now = datetime.now(UTC)

    async def campaign(units: int, lasts: timedelta) -> str:
        item = await catalog.CreateItem(
            catalog_pb2.CreateItemRequest(
                sku="soak-" + uuid.uuid4().hex[:12],
                name="Soak lucky bag",
                kind=common_pb2.ITEM_KIND_SERVICE,
                initial_stock=units,
            )
        )
        created = await campaigns.CreateCampaign(
            campaign_pb2.CreateCampaignRequest(
                item_id=item.id,
                name="Soak",
                units_allotted=units,
                points_price=10,
                per_member_limit=1000,
                starts_at=timestamp((now - timedelta(minutes=1)).timestamp()),
                ends_at=timestamp((now + lasts).timestamp()),
            )
        )
        return created.id

    steady = await campaign(50, timedelta(minutes=minutes + 10))
    ending = await campaign(1_000_000, timedelta(minutes=minutes / 2))
    ids = []
    for _ in range(MEMBERS):
        member = await members.CreateMember(member_pb2.CreateMemberRequest(display_name="Soak"))
        await members.EarnPoints(
            member_pb2.EarnPointsRequest(
                member_id=member.id, points=10**9, reason="soak", idempotency_key="seed"
            )
        )
        ids.append(member.id)
    return steady, ending, ids


async def _drive(
    address: str, redis_url: str, *, minutes: float, rate: int, every_s: float
) -> list[tuple[float, int, int, int]]:
    """Calls at `rate` per second; samples (seconds, calls, keys, used bytes)."""
    samples: list[tuple[float, int, int, int]] = []
    async with credentials.aio_channel(address, credentials.metadata()) as channel:
        steady, ending, members = await _seed(channel, minutes)
        gateway = redemption_pb2_grpc.RedemptionServiceStub(channel)
        store = redis.asyncio.Redis.from_url(redis_url)
        calls, pending = 0, set[asyncio.Task[object]]()
        began = time.monotonic()
        next_sample = 0.0
        while (elapsed := time.monotonic() - began) < minutes * 60:
            if elapsed >= next_sample:
                memory = await store.info("memory")
                keys = int(await store.dbsize())
                samples.append((elapsed, calls, keys, int(memory["used_memory"])))
                say(f"{elapsed:6.0f}s {calls:9,} calls {keys:9,} keys {samples[-1][3]:12,} B")
                next_sample += every_s
            request = redemption_pb2.RedeemRequest(
                member_id=random.choice(members),
                campaign_id=steady if calls % 4 else ending,
                quantity=1,
                idempotency_key=uuid.uuid4().hex,
            )
            task: asyncio.Task[object] = asyncio.ensure_future(gateway.Redeem(request, timeout=10))
            pending.add(task)
            task.add_done_callback(_forget(pending))
            calls += 1
            await asyncio.sleep(max(0.0, began + calls / rate - time.monotonic()))
        await asyncio.gather(*pending, return_exceptions=True)
        memory = await store.info("memory")
        keys = int(await store.dbsize())
        samples.append((time.monotonic() - began, calls, keys, int(memory["used_memory"])))
        say(f"{samples[-1][0]:6.0f}s {calls:9,} calls {keys:9,} keys {samples[-1][3]:12,} B")
        await store.aclose()
    return samples


def _forget(pending: set[asyncio.Task[object]]) -> Callable[[asyncio.Task[object]], None]:
    """Drops a finished call; refusals are the point of the run, so its error is read."""

    def done(task: asyncio.Task[object]) -> None:
        pending.discard(task)
        if not task.cancelled():
            task.exception()

    return done


def _report(samples: list[tuple[float, int, int, int]]) -> None:
    half = next(s for s in samples if s[0] >= samples[-1][0] / 2)
    last = samples[-1]
    calls = max(1, last[1] - half[1])
    per_10k = 10_000 / calls
    say(
        f"second half ({half[0]:.0f}s to {last[0]:.0f}s, {calls:,} calls): "
        f"keys {half[2]:,} -> {last[2]:,} ({(last[2] - half[2]) * per_10k:+,.0f} per 10k calls), "
        f"used memory {half[3]:,} -> {last[3]:,} B "
        f"({(last[3] - half[3]) * per_10k:+,.0f} B per 10k calls)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=200, help="Redeem calls per second")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--server-python", type=Path, help="serve from another checkout")
    parser.add_argument("--results", type=Path, default=Path("results/soak"))
    args = parser.parse_args(argv)
    run_dir = args.results / datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    with stores() as urls:
        address = f"127.0.0.1:{free_port()}"
        env = credentials.with_credentials(
            {
                **os.environ,
                **urls,
                **SERVER_SETTINGS,
                "SURGE_GRPC_ADDRESS": address,
                "SURGE_METRICS_PORT": str(free_port()),
            }
        )
        os.environ["SURGE_TOKEN"] = env["SURGE_TOKEN"]  # for the calls _drive makes
        server = (
            OtherServer(env, address, run_dir, args.server_python)
            if args.server_python
            else Server(env, address, run_dir)
        )
        say(f"surge serve on {address} ready in {server.start():.1f}s; seeding {MEMBERS} members")
        try:
            samples = asyncio.run(
                _drive(
                    address,
                    urls["REDIS_URL"],
                    minutes=args.minutes,
                    rate=args.rate,
                    every_s=args.every,
                )
            )
        finally:
            server.stop()
    _report(samples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
