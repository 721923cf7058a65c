"""The sweeper: keeps invariant 6 (no stuck holds). Its loop runs in every server process;
part of each pass is cluster-wide and runs in the leader only (common/leader.py).

Cluster-wide, the leader's alone (`sweep_once`): every hold whose deadline has passed is
settled from PostgreSQL (committed there: marked done; not there: units and points
released), every points + cash redemption past its payment window expires, and a campaign
past its end gives the units it did not sell back to the item (CampaignChanges.release_ended). Those facts
live in Redis and PostgreSQL, which every process shares, so one process doing them is
enough; passes are idempotent, so two doing them at once for a moment (a leader that has not
yet noticed it lost its lock) is harmless.

Per process, in every process, leader or not:
- reloading the Redis mirrors that missed a commit (`Settler.repair`): the ids are kept in
  this process's memory (common/mirrors.py), by the process whose write Redis refused, so
  no other process knows them;
- refreshing the gauges SREs watch (`refresh_gauges`): pool use is this process's, and every
  process's /metrics must carry the campaign units and holds in flight, also a follower's
  (the only one scraped on its host, or the one that bound the multiprocess metrics port).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from common import redis_memory
from common.dependencies import failure_of
from common.intervals import wait_or_stop
from common.metrics import CampaignUnits, Metrics
from common.redis_nodes import AnyRedis, RedisClock
from flashsale import shards
from flashsale.campaigns import Campaigns
from flashsale.gate import CampaignGate, CampaignKeys
from flashsale.lifecycle import Lifecycle
from flashsale.settle import Settler
from inventory.codes import CodePools
from inventory.low_stock import LowStock

log = logging.getLogger(__name__)
# A pass settles at most this many lapsed holds of one campaign (one PostgreSQL query for
# them all); more wait for the next pass, a sweep interval later, oldest first.
HOLDS_PER_CAMPAIGN_PER_PASS = 500
# Slots whose lapsed holds are asked for in one pipelined round trip (per primary).
SLOTS_PER_ROUND_TRIP = 500
SLOTS_SETTLING_AT_ONCE = 4
# A transfer between stock shards not done this long after it started was interrupted by a
# crash: the sweeper finishes it (a live one finishes in a few round trips; both is harmless).
TRANSFER_GRACE_MS = 2000
# Campaigns stay on the dashboard this long after they end.
_SHOWN_AFTER_END = timedelta(hours=1)


@dataclass
class SweepReport:
    released: int = 0
    committed: int = 0
    expired: int = 0
    allotments_released: int = 0  # campaigns past their end whose unsold units went back
    lag_seconds: float = 0.0  # how far past its deadline the oldest lapsed hold was


class Sweeper:
    def __init__(
        self,
        *,
        pool: AsyncConnectionPool,
        redis: AnyRedis,
        campaigns: Campaigns,
        gate: CampaignGate,
        settler: Settler,
        lifecycle: Lifecycle,
        metrics: Metrics,
        interval_s: float,
        hold_ttl_s: float,
        watch_ended_within: timedelta,
        leading: Callable[[], bool] = lambda: True,
        code_pools: CodePools | None = None,
        low_stock: LowStock | None = None,
        release_ended: Callable[[], Awaitable[int]] | None = None,
        sweep_draws: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        """leading: whether this process runs the cluster-wide part of each pass now."""
        self._pool = pool
        self._redis = redis
        self._campaigns = campaigns
        self._gate = gate
        self._settler = settler
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._interval_s = interval_s
        self._hold_ttl_ms = int(hold_ttl_s * 1000)
        # slot -> Redis time (ms) before which none of its holds can lapse: the deadline of
        # its earliest hold, or (none held) the pass's clock + the hold TTL, since a hold made
        # after that clock read has a deadline at least that late (reserve.lua). A slot is
        # asked again from then on: 10^4 quiet campaigns are read once a TTL, not each pass.
        self._quiet_until: dict[str, int] = {}
        self._watch = watch_ended_within
        self._leading = leading
        self._code_pools = code_pools
        self._low_stock = low_stock
        self._release_ended = release_ended
        self._sweep_draws = sweep_draws  # lapsed lottery draws (lottery/draws.py)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.last: SweepReport = SweepReport()
        self.passes = 0  # cluster-wide passes (sweep_once) run by this process
        self._failing = False  # the last pass failed on a dependency (said once)

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="sweeper")

    async def stop(self) -> None:
        """Lets the current pass finish, then ends the loop. Not a cancel: cancelling in the
        middle of a query can leave a pooled connection (or a Redis hold) half-done."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def sweep_once(self) -> SweepReport:
        """Repairs this process's mirrors, then the cluster-wide part: lapsed holds, overdue
        payments."""
        report = SweepReport()
        # Redis's clock, the one that set the deadlines (reserve.lua): on a cluster, that of
        # the primary owning the campaign's slot (one TIME per primary per pass).
        clock = RedisClock(self._redis)
        await self._settler.repair()  # mirrors that missed a commit while Redis was away
        watched: list[tuple[str, str, int]] = []  # (campaign, slot, its primary's now)
        quiet_until, self._quiet_until = self._quiet_until, {}  # kept for slots still watched
        for campaign_id in await self._campaigns.ids_to_watch(ended_within=self._watch):
            k = await self._campaigns.stock_shards(campaign_id)  # cached by ids_to_watch
            if k > 1:  # transfers between its shards a crash interrupted, then its holds
                now_ms = await clock.now_ms(CampaignKeys(campaign_id).state)
                await self._gate.shards.complete_transfers(
                    campaign_id, k, now_ms - TRANSFER_GRACE_MS
                )
            for slot in shards.slots(campaign_id, k):
                now_ms = await clock.now_ms(CampaignKeys(slot).state)
                if quiet_until.get(slot, 0) <= now_ms:
                    watched.append((campaign_id, slot, now_ms))
                else:
                    self._quiet_until[slot] = quiet_until[slot]
        # The slots due are asked in pipelined chunks, not one round trip each (with 10^4
        # campaigns the one-by-one walk took ~6 ms a campaign: make bench-scale). Then a few
        # slots with lapsed holds settle at once (each takes a pooled connection for its one
        # query; the commits need the rest of the pool).
        gate = asyncio.Semaphore(SLOTS_SETTLING_AT_ONCE)

        async def settle(campaign_id: str, slot: str, now_ms: int, lapsed: Any) -> None:
            async with gate:
                await self._settle_slot(report, campaign_id, slot, now_ms, lapsed)

        for start in range(0, len(watched), SLOTS_PER_ROUND_TRIP):
            chunk = watched[start : start + SLOTS_PER_ROUND_TRIP]
            earliest = await self._gate.earliest_holds_many(
                [slot for _, slot, _ in chunk], limit=HOLDS_PER_CAMPAIGN_PER_PASS
            )
            due = []
            for (campaign_id, slot, now_ms), holds in zip(chunk, earliest, strict=True):
                lapsed = [(hold, deadline) for hold, deadline in holds if deadline <= now_ms]
                if len(lapsed) < len(holds):  # the first still held: nothing lapses before it
                    self._quiet_until[slot] = holds[len(lapsed)][1]
                elif len(holds) < HOLDS_PER_CAMPAIGN_PER_PASS:  # none held once these settle
                    self._quiet_until[slot] = now_ms + self._hold_ttl_ms
                else:  # more lapsed than a pass takes: the next pass asks again
                    self._quiet_until.pop(slot, None)
                if lapsed:
                    due.append(settle(campaign_id, slot, now_ms, lapsed))
            outcomes = await asyncio.gather(
                *due,
                return_exceptions=True,  # every slot's settle ends before the pass fails
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        report.expired = await self._lifecycle.expire_overdue()
        if self._release_ended is not None:  # ended sales' unsold units back to the item
            report.allotments_released = await self._release_ended()
        if self._sweep_draws is not None:  # lottery draws a crash left held
            report.released += await self._sweep_draws()
        self._record(report)
        self.last = report
        self.passes += 1
        return report

    async def _settle_slot(
        self,
        report: SweepReport,
        campaign_id: str,
        slot: str,
        now_ms: int,
        lapsed: list[tuple[str, int]],
    ) -> None:
        """Lapsed holds of one slot (the campaign's, or one of its stock shards): settled."""
        oldest_ms = min(deadline_ms for _, deadline_ms in lapsed)
        report.lag_seconds = max(report.lag_seconds, (now_ms - oldest_ms) / 1000)
        committed, released = await self._settler.settle_lapsed_holds(
            campaign_id, [hold for hold, _ in lapsed], now_ms, slot=slot
        )
        report.committed += committed
        report.released += released

    async def follow_once(self) -> None:
        """A follower's pass: only what is this process's own (see the module docstring)."""
        await self._settler.repair()
        self._metrics.sweeper_lag.set(0)  # the leader measures it; 0 here, also after leading
        # "This process's sweeper loop is alive": the SurgeStuckHolds alert reads it per
        # instance, so a follower keeps it fresh too; surge_leader says which one sweeps.
        self._metrics.sweeper_last_run.set(time.time())

    def _record(self, report: SweepReport) -> None:
        m = self._metrics
        m.sweeper_holds.labels("released").inc(report.released)
        m.sweeper_holds.labels("committed").inc(report.committed)
        m.payments_expired.inc(report.expired)
        m.sweeper_lag.set(report.lag_seconds)
        m.sweeper_last_run.set(time.time())

    async def refresh_gauges(self) -> None:
        """Pool use, Redis memory, units per active campaign, holds in flight."""
        m = self._metrics
        stats = self._pool.get_stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        m.pg_pool.labels("in_use").set(size - idle)
        m.pg_pool.labels("idle").set(idle)
        m.pg_waiting.set(stats.get("requests_waiting", 0))
        redis_up = True  # surge_dependency_up is server/readiness.py's: it probes every second
        try:
            nodes = await redis_memory.read_all(self._redis)  # every primary on a cluster
            for node, memory in nodes.items():
                m.redis_memory.labels("used", node).set(memory.used)
                m.redis_memory.labels("max", node).set(memory.limit)
            m.redis_evicts.set(int(any(memory.evicts for memory in nodes.values())))
        except Exception:
            redis_up = False
        try:
            rows = await self._campaigns.active_units(ended_within=_SHOWN_AFTER_END)
        except Exception:
            rows = []
        in_flight = [(0, 0)] * len(rows)
        if redis_up and rows:
            in_flight = await self._gate.shards.in_flight_many(
                [(r.campaign_id, r.stock_shards, r.committed + r.held) for r in rows]
            )
        m.set_campaigns(
            [
                CampaignUnits(r.campaign_id, r.name, r.allotted, r.committed, r.held + held_redis)
                for r, (held_redis, _) in zip(rows, in_flight, strict=True)
            ]
        )
        m.holds_active.set(sum(holds for _, holds in in_flight))
        if self._code_pools is not None:
            # One indexed count per pool item on sale. PostgreSQL down: the last values
            # stay (surge_dependency_up says so).
            with contextlib.suppress(Exception):
                m.set_code_pools(await self._code_pools.available_by_item())
        if self._low_stock is not None:
            # Two indexed reads of the items with a low-stock threshold (bounded series).
            with contextlib.suppress(Exception):
                watched = await self._low_stock.watched()
                m.set_low_stock(watched.low_items, watched.available, watched.thresholds)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.refresh_gauges()
                if self._leading():
                    await self._sweep_and_log()
                else:
                    await self.follow_once()
            except Exception as e:
                self._failed(e)
            else:
                if self._failing:
                    log.info("sweep: passes succeed again")
                self._failing = False
            await wait_or_stop(self._stopping, self._interval_s)

    def _failed(self, exc: Exception) -> None:
        """A dependency that is down (a Redis failover, PostgreSQL restarting) is said once,
        in one line, until a pass succeeds; anything else is a bug, with its traceback."""
        failure = failure_of(exc)
        if failure is None:
            log.exception("sweep failed; next pass in %.1fs", self._interval_s)
        elif not self._failing:
            log.warning(
                "sweep failed: %s %s (%s); retrying every %.1fs until it answers",
                failure.dependency,
                failure.condition,
                type(exc).__name__,
                self._interval_s,
            )
        self._failing = failure is not None

    async def _sweep_and_log(self) -> None:
        report = await self.sweep_once()
        if report.released or report.committed or report.expired:
            log.info(
                "sweep: released %d holds, settled %d committed, expired %d payments",
                report.released,
                report.committed,
                report.expired,
            )
