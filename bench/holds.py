"""The sweeper's cost for `make bench-scale`: many pending holds, all lapsed, released by the
real sweep pass.

Holds are made as the gate makes them on the redeem path (flashsale/admission.py, steps 2 and
3): the campaign's reserve.lua holds a unit until Redis's clock + a short TTL, then the
member's hold.lua holds the points until the same deadline; no commit follows, as when a
server dies between the hold and the commit. The calls go through the service's
auto-pipeline (many in flight, sharing round trips). Once every deadline has passed, the real
cluster-wide pass (Sweeper.sweep_once, which settles lapsed holds from PostgreSQL: none is
there, so units and points go back) runs back to back, in this process, until no hold is in
flight. The server must be stopped first, so its own sweeper does not take part.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.workloads import SUCCESS_PRICE, _bounded
from flashsale.gate import Reserve, hold_id
from points.gate import Hold, member_keys
from server.app import App, Stores
from server.config import Settings

HOLD_TTL_MS = 1000
_MAX_PASSES = 10_000  # a bound: each pass releases up to 500 holds per campaign


@dataclass(frozen=True)
class SweepResult:
    holds: int
    create_s: float
    sweep_s: float
    passes: int
    released: int
    committed: int
    released_per_s: float
    units_in_flight_after: int  # units still held in Redis, over every campaign
    holds_in_flight_after: int
    points_held_after: int  # points still held in Redis, over the members that had holds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _in_flight(app: App, campaign_ids: Sequence[str]) -> tuple[int, int]:
    """(units held, holds in flight) over the campaigns, a pipeline per 1,000."""
    units = holds = 0
    for at in range(0, len(campaign_ids), 1000):
        part = [(c, 0) for c in campaign_ids[at : at + 1000]]
        for held, count in await app.campaign_gate.in_flight_many(part):
            units += held
            holds += count
    return units, holds


async def _points_held(app: App, member_ids: set[str]) -> int:
    total = 0
    ordered = sorted(member_ids)
    for at in range(0, len(ordered), 1000):
        pipe = app.redis.pipeline(transaction=False)
        for member in ordered[at : at + 1000]:
            pipe.hget(member_keys(member)[0], "held")
        total += sum(int(x or 0) for x in await pipe.execute())
    return total


async def sweep_holds(
    stores: Stores, member_ids: Sequence[str], campaign_ids: Sequence[str], holds: int
) -> SweepResult:
    app = App(Settings(grpc_address="127.0.0.1:0", pg_pool_min=2, pg_pool_max=10), stores)
    await app.pool.open(wait=True, timeout=30)
    await app.campaign_gate.load_scripts()
    await app.points_gate.load_scripts()
    try:
        rng = random.Random(19)
        picks = [
            (
                member_ids[rng.randrange(len(member_ids))],
                campaign_ids[rng.randrange(len(campaign_ids))],
            )
            for _ in range(holds)
        ]

        async def one(i: int, member: str, campaign: str) -> None:
            hold = hold_id(member, f"scale-sweep-{i}")
            units = await app.campaign_gate.reserve(
                campaign, member, hold, quantity=1, fingerprint="scale", hold_ttl_ms=HOLD_TTL_MS
            )
            if units.code is not Reserve.HELD:
                raise RuntimeError(f"reserve for a sweep hold answered {units.code.name}")
            held = await app.points_gate.hold(
                member, hold, SUCCESS_PRICE, deadline_ms=int(units.values[0]), campaign_id=campaign
            )
            if held.code is not Hold.HELD:
                raise RuntimeError(f"points hold for a sweep hold answered {held.code.name}")

        started = time.monotonic()
        await _bounded((one(i, m, c) for i, (m, c) in enumerate(picks)), width=512)
        create_s = time.monotonic() - started
        _, pending = await _in_flight(app, campaign_ids)
        if pending < holds:
            raise RuntimeError(f"{pending} holds in flight, {holds} made")
        await asyncio.sleep(HOLD_TTL_MS / 1000 + 0.2)  # every deadline behind us

        started = time.monotonic()
        passes = released = committed = 0
        while passes < _MAX_PASSES:
            report = await app.sweeper.sweep_once()
            passes += 1
            released += report.released
            committed += report.committed
            if released + committed >= holds and not (await _in_flight(app, campaign_ids))[1]:
                break
        sweep_s = time.monotonic() - started
        units_after, holds_after = await _in_flight(app, campaign_ids)
        points_after = await _points_held(app, {m for m, _ in picks})
        return SweepResult(
            holds=holds,
            create_s=create_s,
            sweep_s=sweep_s,
            passes=passes,
            released=released,
            committed=committed,
            released_per_s=released / sweep_s if sweep_s > 0 else 0.0,
            units_in_flight_after=units_after,
            holds_in_flight_after=holds_after,
            points_held_after=points_after,
        )
    finally:
        await app.calls.aclose()
        await app.redis.aclose()
        await app.pool.close()
