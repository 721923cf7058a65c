"""The member's side of the Redis admission gate: points holds on the {member:ID} slot."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from importlib import resources
from typing import Any

import redis.exceptions

from common.autopipeline import AutoPipeline
from common.metrics import Metrics
from common.mirrors import StaleMirrors
from common.redis_nodes import AnyPipeline, AnyRedis, register_script

log = logging.getLogger(__name__)


class Hold(IntEnum):
    """Replies of points/lua/hold.lua."""

    HELD = 1
    ALREADY_HELD = 2
    INSUFFICIENT = 3
    FROZEN = 4
    NOT_LOADED = 5
    BELOW_THRESHOLD = 6


class Claim(IntEnum):
    """Replies of points/lua/claim.lua."""

    CLAIMED = 1
    KEY_REUSED = 2


@dataclass(frozen=True)
class HoldReply:
    code: Hold
    available: int = 0
    dropped: int = 0  # lapsed holds this call dropped: the member's mirror may be stale


@dataclass(frozen=True)
class MemberMirror:
    """The PostgreSQL state Redis mirrors: spendable = balance - points waiting for payment.

    `eligible` (lifetime earned points reached the redemption threshold) is None when the
    writer did not read it (the group commit, which never changes it): Redis keeps its own."""

    spendable: int
    version: int
    frozen: bool
    eligible: bool | None = None


def member_keys(member_id: str) -> list[str]:
    # Built by concatenation: the braces are the hash tag and must survive.
    tag = "{member:" + member_id + "}"
    return [tag, tag + ":holds", tag + ":hinfo"]


def claim_key(member_id: str, idempotency_key: str) -> str:
    return "{member:" + member_id + "}:k:" + idempotency_key


def _settle_args(hold_id: str, mirror: MemberMirror | None, idle_s: int) -> list[str | int]:
    if mirror is None:
        return [hold_id, 0, 0, 0, "", idle_s]
    eligible = "" if mirror.eligible is None else int(mirror.eligible)
    return [hold_id, mirror.spendable, mirror.version, int(mirror.frozen), eligible, idle_s]


def _script(name: str) -> str:
    return (resources.files("points") / "lua" / name).read_text()


class PointsGate:
    def __init__(
        self,
        redis: AnyRedis,
        *,
        calls: AutoPipeline,
        metrics: Metrics,
        key_ttl_seconds: int,
        idle_seconds: int,
    ) -> None:
        self._redis = redis
        self._calls = calls
        self._metrics = metrics
        self._key_ttl = key_ttl_seconds  # a key's binding (claim.lua)
        self._idle = idle_seconds  # the member's state and holds, after the last use
        self._claim = register_script(redis, _script("claim.lua"))
        self._hold = register_script(redis, _script("hold.lua"))
        self._settle = register_script(redis, _script("settle.lua"))
        # Members whose mirror missed a commit: Members.repair_mirrors reloads them (each sweep).
        self.stale = StaleMirrors()

    async def claim(self, member_id: str, idempotency_key: str, fingerprint: str) -> Claim:
        """Binds the member's key to this request (one request per key, across campaigns)."""
        with self._metrics.redis_call("claim"):
            reply = await self._calls.call(
                self._claim, [claim_key(member_id, idempotency_key)], [fingerprint, self._key_ttl]
            )
        return Claim(int(reply[0]))

    async def hold(
        self, member_id: str, hold_id: str, points: int, *, deadline_ms: int, campaign_id: str
    ) -> HoldReply:
        with self._metrics.redis_call("hold"):
            reply = await self._calls.call(
                self._hold,
                member_keys(member_id),
                [hold_id, points, self._idle, deadline_ms, campaign_id],
            )
        code = Hold(int(reply[0]))
        # Available may be briefly negative (a ledger debit landed while holds were in
        # flight: docs/design.md, Known gaps); a refusal reports it as 0.
        available = max(0, int(reply[1])) if code is Hold.INSUFFICIENT else 0
        if int(reply[2]):
            self.stale.mark(member_id)  # a lapsed hold's settle was lost: reload the mirror
        return HoldReply(code, available, int(reply[2]))

    def settle(
        self, member_id: str, *, hold_id: str = "", mirror: MemberMirror | None = None
    ) -> Awaitable[Any]:
        """Drops the hold (if any) and applies the mirror (if newer), auto-pipelined."""
        keys = member_keys(member_id)
        return self._calls.call(self._settle, keys, _settle_args(hold_id, mirror, self._idle))

    async def mirror_committed(
        self, member_id: str, mirror: MemberMirror, *, hold_id: str = ""
    ) -> None:
        """After a PostgreSQL commit: Redis takes the new state if it can. Never raises, so
        an error can never hide the commit. A mirror that did not land leaves Redis behind
        (versioned, never ahead): too generous only until PostgreSQL's guards refuse, too
        stingy until the sweeper reloads the member from `stale`."""
        try:
            await self.settle(member_id, hold_id=hold_id, mirror=mirror)
        except redis.exceptions.RedisError as e:
            log.warning(
                "member %s: mirror of a commit not applied (%s); the sweeper reloads it",
                member_id,
                type(e).__name__,
            )
            self.stale.mark(member_id)
            self._metrics.mirrors_deferred.labels("member").inc()

    def queue_settle(self, pipe: AnyPipeline, member_id: str, mirror: MemberMirror) -> None:
        """The same as `settle` without a hold, queued in the caller's pipeline (rebuilds).
        Bare EVALSHA: the caller loads the scripts first."""
        keys = member_keys(member_id)
        # execute_command: a ClusterPipeline blocks its `evalsha` method, not the command
        # (which it routes by the keys, all in the member's slot).
        pipe.execute_command(
            "EVALSHA", self._settle.sha, len(keys), *keys, *_settle_args("", mirror, self._idle)
        )

    async def load_scripts(self) -> None:
        for script in (self._claim, self._hold, self._settle):
            await self._redis.script_load(script.script)

    def count_load(self) -> None:
        self._metrics.cache_loads.labels("member").inc()

    def pipeline(self) -> AnyPipeline:
        return self._redis.pipeline(transaction=False)

    async def mirror_many(self, mirrors: Sequence[tuple[str, MemberMirror]]) -> None:
        """`settle` without a hold for many members, in one pipeline (one round trip per
        primary on a cluster). A primary without the script (NOSCRIPT: restarted, flushed, or
        a replica promoted mid-rebuild) makes the whole batch go again after SCRIPT LOAD on
        every primary: a settle with a mirror is versioned, so the members already applied
        take the repeat as a no-op. Once only: a second NOSCRIPT raises."""
        for attempt in (1, 2):
            pipe = self.pipeline()
            for member_id, mirror in mirrors:
                self.queue_settle(pipe, member_id, mirror)
            try:
                await pipe.execute()
                return
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                log.warning("NOSCRIPT in a batch of %d mirrors: scripts loaded again", len(mirrors))
                await self.load_scripts()

    async def held(self, member_id: str) -> int:
        """Points in in-flight holds (0 when the member is not loaded)."""
        value = await self._redis.hget(member_keys(member_id)[0], "held")
        return int(value or 0)
