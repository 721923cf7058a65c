"""The campaign's side of the Redis admission gate: unit holds on the {campaign:ID} slot.

Every script touches one hash slot, so the gate runs unchanged on Redis Cluster. Replies
are IntEnums; the redemption flow turns them into domain errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline


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


def _script(name: str) -> str:
    return (resources.files("flashsale") / "lua" / name).read_text()


class CampaignGate:
    def __init__(self, redis: Redis, *, record_ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = record_ttl_seconds
        self._reserve = redis.register_script(_script("reserve.lua"))
        self._resolve = redis.register_script(_script("resolve.lua"))
        self._load = redis.register_script(_script("load.lua"))
        self._restore = redis.register_script(_script("restore_records.lua"))

    async def reserve(
        self,
        campaign_id: str,
        member_id: str,
        hold: str,
        *,
        quantity: int,
        fingerprint: str,
        now_ms: int,
        deadline_ms: int,
    ) -> ReserveReply:
        k = CampaignKeys(campaign_id)
        reply = await self._reserve(
            keys=[k.state, k.record(hold), k.deadlines, k.mheld, k.taken],
            args=[member_id, hold, quantity, fingerprint, now_ms, deadline_ms, self._ttl],
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
        pipe: Pipeline | None = None,
    ) -> Any:
        k = CampaignKeys(campaign_id)
        m = mirror or CampaignMirror(0, 0, 0, 0)
        return await self._resolve(
            keys=[k.state, k.record(hold), k.deadlines, k.mheld, k.taken, k.tver],
            args=[
                member_id,
                hold,
                fingerprint,
                outcome,
                *refusal,
                self._ttl,
                m.taken,
                m.version,
                m.member_taken,
                m.member_version,
                expired_before_ms,
            ],
            client=pipe,
        )

    async def load(self, campaign_id: str, state: CampaignLoad) -> bool:
        """Creates the campaign's state if absent, else applies newer mirror values only."""
        k = CampaignKeys(campaign_id)
        members = [value for row in state.members for value in row]
        reply = await self._load(
            keys=[k.state, k.taken, k.tver],
            args=[
                state.allotted,
                state.limit,
                state.starts_ms,
                state.ends_ms,
                state.taken,
                state.version,
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

    async def expired_holds(self, campaign_id: str, before_ms: int) -> list[str]:
        k = CampaignKeys(campaign_id)
        ids = await self._redis.zrangebyscore(k.deadlines, "-inf", before_ms)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def in_flight(self, campaign_id: str) -> int:
        """Units in in-flight holds (0 when the campaign is not loaded)."""
        value = await self._redis.hget(CampaignKeys(campaign_id).state, "held")
        return int(value or 0)

    def pipeline(self) -> Pipeline:
        return self._redis.pipeline(transaction=False)
