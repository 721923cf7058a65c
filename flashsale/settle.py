"""Step 6 of the redemption path and its stragglers: Redis's holds settled to what
PostgreSQL decided.

- settle_batch: a committed batch's holds, before any caller is answered.
- apply_mirrors: one redemption's rows after a cancel, a confirmation or an expiry. Best
  effort, never an error (the change is committed): what did not land is reloaded by
  `repair`, which the sweeper runs each pass.
- settle_lapsed_holds: the sweeper's step for a campaign's holds past their deadline.

Every settle carries PostgreSQL's versioned counters, which Redis applies only when newer, so
settles may arrive in any order, twice, or after a rebuild.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import redis.exceptions
from psycopg_pool import AsyncConnectionPool

from common.metrics import Metrics
from common.mirrors import StaleMirrors
from flashsale import shards, store
from flashsale.campaigns import Campaigns
from flashsale.committer import SAVED_REFUSALS, CommitEntry, CommitResult
from flashsale.gate import CampaignGate, CampaignMirror, Outcome, Resolution, hold_id
from points.gate import MemberMirror, PointsGate
from points.members import Members

log = logging.getLogger(__name__)
# Lapsed holds of one slot settled together (their scripts share auto-pipelined round trips).
SETTLING_AT_ONCE = 64


class Settler:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        campaign_gate: CampaignGate,
        points_gate: PointsGate,
        campaigns: Campaigns,
        members: Members,
        metrics: Metrics,
    ) -> None:
        self._pool = pool
        self._cgate = campaign_gate
        self._pgate = points_gate
        self._campaigns = campaigns
        self._members = members
        self._metrics = metrics
        # Campaigns whose mirror missed a committed change: `repair` reloads them.
        self._stale_campaigns = StaleMirrors()

    async def settle_batch(self, pairs: list[tuple[CommitEntry, CommitResult]]) -> None:
        """Step 6 for a whole batch: every hold settled and the PostgreSQL counters that came
        back applied (newer versions win, so order does not matter), one `settle` per hold,
        then one `resolve` per campaign (atomic: units move from held to taken at once).

        Members first, campaigns second, each a round trip shared through the
        auto-pipeline: a process killed in between leaves campaign holds, which the sweeper
        finds and settles on both sides, never a points hold that nothing points back to."""
        campaigns: dict[str, list[tuple[CommitEntry, CommitResult]]] = {}
        last_of_member: dict[str, int] = {}
        for i, pair in enumerate(pairs):
            campaigns.setdefault(pair[0].campaign_id, []).append(pair)
            last_of_member[pair[0].member_id] = i
        member_calls: list[Awaitable[Any]] = []
        for i, (entry, result) in enumerate(pairs):
            # A member's points mirror goes with its last hold of the batch: dropping an
            # earlier hold first can only make Redis briefly more generous than PostgreSQL,
            # which then refuses (the guard), never stingier (a refusal Redis would keep).
            mirror = result.member if last_of_member[entry.member_id] == i else None
            hold = hold_id(entry.member_id, entry.idempotency_key)
            member_calls.append(self._pgate.settle(entry.member_id, hold_id=hold, mirror=mirror))
        campaign_calls: list[Awaitable[Any]] = []
        for campaign_id, group in campaigns.items():
            k = await self._campaigns.stock_shards(campaign_id)
            if k > 1:  # each hold on its member's home shard
                campaign_calls += self._resolve_on_shards(campaign_id, k, group)
                continue
            mirrors = [r.campaign for _, r in group if r.campaign is not None]
            newest = max(mirrors, key=lambda m: m.version, default=None)
            campaign_calls.append(
                self._cgate.resolve_many(
                    campaign_id,
                    [resolution(entry, result) for entry, result in group],
                    taken=newest.taken if newest else 0,
                    version=newest.version if newest else 0,
                )
            )
        with self._metrics.redis_call("settle_batch"):
            for calls in (member_calls, campaign_calls):
                replies = await asyncio.gather(*calls, return_exceptions=True)
                failed = [r for r in replies if isinstance(r, BaseException)]
                if failed:  # the sweeper settles what is left, from PostgreSQL
                    raise failed[0]

    def _resolve_on_shards(
        self, campaign_id: str, k: int, group: list[tuple[CommitEntry, CommitResult]]
    ) -> list[Awaitable[Any]]:
        """A split campaign's part of a batch: one resolve per home shard, counting done
        units into the shard's own taken (flashsale/shards.py)."""
        homes: dict[str, list[Resolution]] = {}
        for entry, result in group:
            where = shards.home(campaign_id, entry.member_id, k)
            homes.setdefault(where, []).append(resolution(entry, result))
        return [
            self._cgate.resolve_many(where, todo, taken=0, version=shards.SHARD_TAKEN)
            for where, todo in homes.items()
        ]

    async def settle_lapsed_holds(
        self, campaign_id: str, holds: list[str], now_ms: int, *, slot: str | None = None
    ) -> tuple[int, int]:
        """The sweeper's step for a campaign's holds past their deadline: one PostgreSQL
        query finds which of them this campaign committed (settled as done); the rest
        release units and points. `slot`: the stock shard holding them, if the campaign is
        split. Returns (committed, released)."""
        where = slot or campaign_id
        keys = [_member_and_key(hold) for hold in holds]
        async with self._pool.connection() as conn:
            found = await store.by_keys(conn, campaign_id, keys)
            mirrors = {pair: await store.mirrors(conn, row) for pair, row in found.items()}

        async def settle_one(hold: str, member_id: str, key: str) -> str:
            row = found.get((member_id, key))
            if row is not None:
                campaign, member = mirrors[(member_id, key)]
                await self._pgate.settle(member_id, hold_id=hold, mirror=member)
                await self._cgate.resolve(
                    where,
                    member_id,
                    hold,
                    fingerprint=row["request_hash"],
                    outcome=Outcome.DONE,
                    mirror=shards.shard_mirror(campaign, split=where != campaign_id),
                )
                return "committed"
            resolved = await self._cgate.resolve(
                where,
                member_id,
                hold,
                fingerprint="",
                outcome=Outcome.RELEASE,
                expired_before_ms=now_ms,
            )
            if resolved == 1:
                await self._pgate.settle(member_id, hold_id=hold)
                return "released"
            return "neither"

        # Holds are independent (each its own member and key; each keeps its own order of
        # steps), so they settle together: their scripts share the auto-pipeline's round
        # trips instead of two round trips a hold, one after another (make bench-scale:
        # 10^5 lapsed holds took a minute one by one).
        gate = asyncio.Semaphore(SETTLING_AT_ONCE)

        async def bounded(hold: str, member_id: str, key: str) -> str:
            async with gate:
                return await settle_one(hold, member_id, key)

        done = await asyncio.gather(
            *(bounded(hold, m, k) for hold, (m, k) in zip(holds, keys, strict=True)),
            return_exceptions=True,  # every hold's steps end before the pass fails
        )
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        return done.count("committed"), done.count("released")

    async def apply_mirrors(
        self,
        row: dict[str, Any],
        campaign: CampaignMirror,
        member: MemberMirror,
        *,
        units_returned: bool = False,
    ) -> None:
        """units_returned: the change gave the redemption's units back (cancel, expiry),
        which a split campaign's home shard counts itself (flashsale/shards.py)."""
        hold = hold_id(row["member_id"], row["idempotency_key"])
        try:
            k = await self._campaigns.stock_shards(row["campaign_id"])
            await self._cgate.resolve(
                shards.home(row["campaign_id"], row["member_id"], k),
                row["member_id"],
                hold,
                fingerprint=row["request_hash"],
                outcome=Outcome.DONE,
                mirror=shards.shard_mirror(campaign, split=k > 1),
            )
            if k > 1 and units_returned:
                await self._cgate.shards.return_units(
                    row["campaign_id"], k, row["member_id"], row["id"], row["quantity"]
                )
        except redis.exceptions.RedisError as e:
            log.warning(
                "campaign %s: mirror of a committed change not applied (%s); the sweeper "
                "reloads it",
                row["campaign_id"],
                type(e).__name__,
            )
            self.defer_campaign_mirror(row["campaign_id"])
        await self._pgate.mirror_committed(row["member_id"], member)

    def defer_campaign_mirror(self, campaign_id: str) -> None:
        """A committed change Redis did not take (an operator's update): `repair` reloads it."""
        self._stale_campaigns.mark(campaign_id)
        self._metrics.mirrors_deferred.labels("campaign").inc()

    async def repair(self) -> int:
        """Reloads campaigns and members whose mirror missed a commit; returns how many."""
        campaigns = await self._stale_campaigns.reload(self._campaigns.load_into_gate)
        return campaigns + await self._members.repair_mirrors()


def _member_and_key(hold: str) -> tuple[str, str]:
    member_id, key = hold.split(":", 1)
    return member_id, key


def resolution(entry: CommitEntry, result: CommitResult) -> Resolution:
    """How a committed batch's entry settles its units hold."""
    hold = hold_id(entry.member_id, entry.idempotency_key)
    fingerprint, refusal = entry.request_hash, ("", 0, 0)
    if result.outcome in ("COMMITTED", "PENDING_PAYMENT", "EXISTING"):
        outcome = Outcome.DONE
        fingerprint = result.request_hash or fingerprint
    elif result.outcome in SAVED_REFUSALS:
        outcome, refusal = Outcome.REFUSED, (result.outcome, 0, 0)
    else:
        outcome = Outcome.RELEASE
    m = result.campaign
    return Resolution(
        entry.member_id,
        hold,
        fingerprint,
        outcome,
        refusal,
        m.member_taken if m else 0,
        m.member_version if m else 0,
    )
