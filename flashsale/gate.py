"""The campaign's side of the Redis admission gate: unit holds on the {campaign:ID} slot.

Every script touches one hash slot, so the gate runs unchanged on Redis Cluster. Replies
are IntEnums; the redemption flow turns them into domain errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from importlib import resources
from typing import Any

from common.autopipeline import AutoPipeline
from common.metrics import Metrics
from common.redis_nodes import AnyPipeline, AnyRedis, register_script


class Reserve(IntEnum):
    """Replies of flashsale/lua/reserve.lua."""

    HELD = 1
    IN_FLIGHT = 2
    DONE = 3
    REFUSED_BEFORE = 4
    KEY_REUSED = 5
    NOT_LOADED = 6
    NOT_ACTIVE = 7
    LIMIT_EXCEEDED = 8
    SOLD_OUT = 9
    LAPSED = 10


class Outcome:
    """How resolve.lua settles a hold."""

    DONE = "done"  # in PostgreSQL now
    RELEASE = "release"  # back to stock, key free for a retry
    REFUSED = "refused"  # back to stock, key remembers the refusal


@dataclass(frozen=True)
class ReserveReply:
    code: Reserve
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Resolution:
    """One hold to resolve, with the member's units mirror from PostgreSQL (0 = none)."""

    member_id: str
    hold: str
    fingerprint: str
    outcome: str
    refusal: tuple[str, int, int] = ("", 0, 0)
    member_taken: int = 0
    member_version: int = 0


@dataclass(frozen=True)
class CampaignMirror:
    """Counters Redis mirrors from PostgreSQL, each with the version it was read at."""

    taken: int
    version: int
    member_taken: int
    member_version: int


@dataclass(frozen=True)
class CampaignLoad:
    allotted: int
    limit: int
    starts_ms: int
    ends_ms: int
    taken: int
    version: int
    members: Sequence[tuple[str, int, int]]  # member id, units taken, version
    meta_version: int = 1  # the version of allotted, limit and the window


class CampaignKeys:
    __slots__ = ("deadlines", "mheld", "state", "tag", "taken", "tver")

    def __init__(self, campaign_id: str) -> None:
        # Built by concatenation: the braces are the hash tag and must survive.
        self.tag = "{campaign:" + campaign_id + "}"
        self.state = self.tag
        self.deadlines = self.tag + ":deadlines"
        self.mheld = self.tag + ":mheld"
        self.taken = self.tag + ":taken"
        self.tver = self.tag + ":tver"

    def record(self, hold_id: str) -> str:
        return self.tag + ":h:" + hold_id


def hold_id(member_id: str, idempotency_key: str) -> str:
    """Holds are named by the idempotency key, which is scoped to the member."""
    return member_id + ":" + idempotency_key


def _not_yet_committed(held: int, redis_taken: int, pg_taken: int) -> int:
    """A hold stays in Redis's `held` until its batch is settled, while PostgreSQL already
    counts it: what PostgreSQL has beyond Redis's mirror is such units, not new ones."""
    return max(0, held - max(0, pg_taken - redis_taken))


def _script(name: str) -> str:
    return (resources.files("flashsale") / "lua" / name).read_text()


class CampaignGate:
    def __init__(
        self,
        redis: AnyRedis,
        *,
        calls: AutoPipeline,
        record_ttl_seconds: int,
        refusal_ttl_seconds: int,
        retention_after_end_seconds: int,
        metrics: Metrics,
    ) -> None:
        self._redis = redis
        self._calls = calls
        self._metrics = metrics
        self._ttl = record_ttl_seconds  # a done record: the key redeemed
        self._refusal_ttl = refusal_ttl_seconds  # a refused record
        self._retention_ms = retention_after_end_seconds * 1000  # campaign keys, after the end
        self._reserve = register_script(redis, _script("reserve.lua"))
        self._resolve = register_script(redis, _script("resolve.lua"))
        self._load = register_script(redis, _script("load.lua"))
        self._restore = register_script(redis, _script("restore_records.lua"))
        # Split campaigns' stock shards (flashsale/shards.py imports this module).
        from flashsale.shards import ShardGate

        self.shards = ShardGate(self, redis, metrics=metrics, retention_ms=self._retention_ms)

    async def reserve(
        self,
        campaign_id: str,
        member_id: str,
        hold: str,
        *,
        quantity: int,
        fingerprint: str,
        hold_ttl_ms: int,
        remember_sold_out: bool = True,
    ) -> ReserveReply:
        """Holds units until Redis's clock + `hold_ttl_ms` (the reply carries the deadline).
        `campaign_id` may name a stock shard (flashsale/shards.py), whose SOLD_OUT is not
        remembered unless `remember_sold_out`."""
        k = CampaignKeys(campaign_id)
        with self._metrics.redis_call("reserve"):
            reply = await self._calls.call(
                self._reserve,
                [k.state, k.record(hold), k.deadlines, k.mheld, k.taken],
                [
                    member_id,
                    hold,
                    quantity,
                    fingerprint,
                    0 if remember_sold_out else 1,
                    hold_ttl_ms,
                    self._refusal_ttl,
                ],
            )
        values = tuple(v.decode() if isinstance(v, bytes) else v for v in reply[1:])
        return ReserveReply(Reserve(int(reply[0])), values)

    async def resolve(
        self,
        campaign_id: str,
        member_id: str,
        hold: str,
        *,
        fingerprint: str,
        outcome: str,
        mirror: CampaignMirror | None = None,
        refusal: tuple[str, int, int] = ("", 0, 0),
        expired_before_ms: int = 0,
    ) -> int:
        """Resolves one hold; 1 if it was held, 0 if not (any more), 2 if not yet expired."""
        m = mirror or CampaignMirror(0, 0, 0, 0)
        one = Resolution(
            member_id, hold, fingerprint, outcome, refusal, m.member_taken, m.member_version
        )
        with self._metrics.redis_call("resolve"):
            replies = await self.resolve_many(
                campaign_id,
                [one],
                taken=m.taken,
                version=m.version,
                expired_before_ms=expired_before_ms,
            )
        return int(replies[0])

    def resolve_many(
        self,
        campaign_id: str,
        resolutions: Sequence[Resolution],
        *,
        taken: int = 0,
        version: int = 0,
        expired_before_ms: int = 0,
    ) -> Awaitable[list[int]]:
        """Resolves holds of one campaign in one atomic call and applies the campaign's
        PostgreSQL counters (taken, version) if newer; replies as `resolve`, one per hold."""
        k = CampaignKeys(campaign_id)
        keys = [k.state, k.deadlines, k.mheld, k.taken, k.tver]
        args: list[str | int] = [self._ttl, taken, version, expired_before_ms, self._refusal_ttl]
        for r in resolutions:
            keys.append(k.record(r.hold))
            args += [r.member_id, r.hold, r.fingerprint, r.outcome, *r.refusal]
            args += [r.member_taken, r.member_version]
        result: Awaitable[list[int]] = self._calls.call(self._resolve, keys, args)
        return result

    async def load_scripts(self) -> None:
        """SCRIPT LOAD every script, so the first calls after start do not meet NOSCRIPT
        (calls send bare EVALSHA; the auto-pipeline reloads on NOSCRIPT by itself)."""
        for script in (self._reserve, self._resolve, self._load, self._restore):
            await self._redis.script_load(script.script)
        await self.shards.load_scripts()

    async def load(self, campaign_id: str, state: CampaignLoad) -> bool:
        """Creates the campaign's state if absent, else applies newer mirror values only."""
        k = CampaignKeys(campaign_id)
        members = [value for row in state.members for value in row]
        self._metrics.cache_loads.labels("campaign").inc()
        reply = await self._load(
            keys=[k.state, k.taken, k.tver],
            args=[
                state.allotted,
                state.limit,
                state.starts_ms,
                state.ends_ms,
                state.taken,
                state.version,
                self._retention_ms,
                state.meta_version,
                *members,
            ],
        )
        return bool(int(reply[0]))

    async def restore_records(self, campaign_id: str, done: Sequence[tuple[str, str]]) -> int:
        """Restores 'done' idempotency records for (hold id, fingerprint) pairs, if absent."""
        k = CampaignKeys(campaign_id)
        written = 0
        for start in range(0, len(done), 500):
            chunk = done[start : start + 500]
            args: list[str | int] = [self._ttl]
            for hold, fingerprint in chunk:
                args += [hold.split(":", 1)[0], fingerprint]
            written += int(await self._restore(keys=[k.record(h) for h, _ in chunk], args=args))
        return written

    async def earliest_holds_many(
        self, slots: Sequence[str], *, limit: int
    ) -> list[list[tuple[str, int]]]:
        """For each slot: (hold id, deadline ms) of its `limit` in-flight holds with the
        earliest deadlines, earliest first (the sweeper takes those past their deadline, a
        bounded number a pass, and learns when the next can lapse). One round trip (one per
        primary on a cluster): a pass asks many campaigns, mostly to hear "none"."""
        pipe = self.pipeline()
        for slot in slots:
            pipe.zrange(CampaignKeys(slot).deadlines, 0, limit - 1, withscores=True)
        replies: list[list[tuple[bytes, float]]] = await pipe.execute()
        return [
            [(i.decode() if isinstance(i, bytes) else str(i), int(s)) for i, s in rows]
            for rows in replies
        ]

    async def in_flight_many(self, campaigns: Sequence[tuple[str, int]]) -> list[tuple[int, int]]:
        """For (campaign id, units PostgreSQL counts as taken) pairs: (units held in flight and
        not yet in PostgreSQL, number of in-flight holds), in one round trip (one per primary
        on a cluster, concurrently; the replies come back in command order)."""
        pipe = self.pipeline()
        for campaign_id, _ in campaigns:
            k = CampaignKeys(campaign_id)
            pipe.hmget(k.state, "held", "taken")
            pipe.zcard(k.deadlines)
        replies = await pipe.execute()
        result = []
        for (_, pg_taken), (held, taken), holds in zip(
            campaigns, replies[0::2], replies[1::2], strict=True
        ):
            result.append(
                (_not_yet_committed(int(held or 0), int(taken or 0), pg_taken), int(holds))
            )
        return result

    async def remaining_many(self, campaign_ids: Sequence[str]) -> list[int | None]:
        """Units the gate would still hold for each campaign (allotted - taken - held, at
        least 0), in one round trip; None where the campaign is not loaded."""
        pipe = self.pipeline()
        for campaign_id in campaign_ids:
            pipe.hmget(CampaignKeys(campaign_id).state, "allotted", "taken", "held")
        result: list[int | None] = []
        for allotted, taken, held in await pipe.execute():
            if allotted is None:
                result.append(None)
            else:
                result.append(max(0, int(allotted) - int(taken or 0) - int(held or 0)))
        return result

    def pipeline(self) -> AnyPipeline:
        """Not a transaction: on a cluster, a ClusterPipeline split by node."""
        return self._redis.pipeline(transaction=False)
