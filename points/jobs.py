"""Periodic ledger work, run by the leader alone (common/leader.py: started when a process
becomes leader, stopped when it steps down); each job stays safe to run from several
processes at once, as it was when every process ran them:

- every SURGE_LEDGER_JOB_INTERVAL_SECONDS: expire what remains of lots past their expiry
  (idempotent, each member under its row lock, so several processes may run it at once);
  then activate due pending purchase points, a chunk per pass (points/pending.py; each
  purchase is activated once, under its member's row lock);
- every SURGE_TIER_EVALUATION_INTERVAL_SECONDS (daily): evaluate every member's tier. One
  process does it per interval: it claims the run in PostgreSQL (ledger_jobs) first;
- at start and with each tier run: bring members' redemption eligibility in line with the
  program's threshold (it only changes when the threshold setting changed).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from common.intervals import wait_or_stop
from points import PointsLedger
from points.program import utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobReport:
    expired_members: int = 0
    expired_points: int = 0
    tiers_evaluated: bool = False
    tier_changes: int = 0
    eligibility_changes: int = 0
    activated_points: int = 0


class LedgerJobs:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        ledger: PointsLedger,
        *,
        interval_s: float | None = None,
        tier_interval_s: float | None = None,
    ) -> None:
        self._pool = pool
        self._ledger = ledger
        program = ledger.program
        self._interval_s = interval_s or program.job_interval_seconds
        self._tier_interval = timedelta(
            seconds=tier_interval_s or program.tier_evaluation_interval_seconds
        )
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._reconciled = False
        self.last = JobReport()

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="ledger-jobs")

    async def stop(self) -> None:
        """Lets the current pass finish, then ends the loop (never a cancel: a cancel in
        the middle of a query can leave a pooled connection half-done)."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def run_once(
        self, now: datetime | None = None, *, evaluate_tiers: bool | None = None
    ) -> JobReport:
        """One pass. evaluate_tiers: None = when the daily run is due (claimed in
        PostgreSQL), True / False = force it or skip it."""
        now = now or utc_now()
        expired = await self._ledger.expiry.expire_points(now)
        # Due pending purchase points (pending.py), one chunk per pass.
        activated = await self._ledger.pending.activate_due(now)
        eligibility = 0
        if not self._reconciled:
            eligibility = await self._ledger.members.reconcile_eligibility()
            self._reconciled = True
        due = await self._claim_tier_run(now) if evaluate_tiers is None else evaluate_tiers
        changes = 0
        if due:
            changes = await self._ledger.tiers.evaluate_all_tiers(now)
            eligibility += await self._ledger.members.reconcile_eligibility()
        report = JobReport(expired.members, expired.points, due, changes, eligibility, activated)
        self.last = report
        return report

    async def _claim_tier_run(self, now: datetime) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO ledger_jobs AS j (name, last_run_at) VALUES ('tiers', %s) "
                "ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at "
                "WHERE j.last_run_at <= %s RETURNING 1",
                (now, now - self._tier_interval),
            )
            return await cur.fetchone() is not None

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                report = await self.run_once()
                if (
                    report.expired_points
                    or report.tier_changes
                    or report.eligibility_changes
                    or report.activated_points
                ):
                    log.info(
                        "ledger jobs: expired %d points of %d members, %d tier changes, "
                        "%d eligibility changes, %d pending points activated",
                        report.expired_points,
                        report.expired_members,
                        report.tier_changes,
                        report.eligibility_changes,
                        report.activated_points,
                    )
            except Exception:
                log.exception("ledger jobs failed; next pass in %.1fs", self._interval_s)
            await wait_or_stop(self._stopping, self._interval_s)
