"""The sweeper: runs inside every server process and keeps invariant 6 (no stuck holds).

Each pass: every hold whose deadline has passed is settled from PostgreSQL (committed there:
marked done; not there: units and points released), and every points + cash redemption past
its payment window expires. Passes are idempotent, so several processes may sweep at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from flashsale.campaigns import Campaigns
from flashsale.gate import CampaignGate
from flashsale.redemptions import Redemptions

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    released: int = 0
    committed: int = 0
    expired: int = 0
    lag_seconds: float = 0.0  # how long the oldest lapsed hold waited past its deadline
    errors: list[str] = field(default_factory=list)


class Sweeper:
    def __init__(
        self,
        *,
        campaigns: Campaigns,
        gate: CampaignGate,
        redemptions: Redemptions,
        interval_s: float,
        watch_ended_within: timedelta,
    ) -> None:
        self._campaigns = campaigns
        self._gate = gate
        self._redemptions = redemptions
        self._interval_s = interval_s
        self._watch = watch_ended_within
        self._task: asyncio.Task[None] | None = None
        self.last: SweepReport = SweepReport()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sweep_once(self) -> SweepReport:
        report = SweepReport()
        now_ms = int(time.time() * 1000)
        for campaign_id in await self._campaigns.ids_to_watch(ended_within=self._watch):
            for hold in await self._gate.expired_holds(campaign_id, now_ms):
                did = await self._redemptions.settle_lapsed_hold(campaign_id, hold, now_ms)
                if did == "released":
                    report.released += 1
                elif did == "committed":
                    report.committed += 1
        report.expired = await self._redemptions.expire_overdue()
        self.last = report
        return report

    async def _loop(self) -> None:
        while True:
            try:
                report = await self.sweep_once()
                if report.released or report.committed or report.expired:
                    log.info(
                        "sweep: released %d holds, settled %d committed, expired %d payments",
                        report.released,
                        report.committed,
                        report.expired,
                    )
            except Exception:
                log.exception("sweep failed; next pass in %.1fs", self._interval_s)
            await asyncio.sleep(self._interval_s)
