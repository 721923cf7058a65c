"""The lottery's side of the Redis admission gate: draws held on the {lottery:ID} slot.

Every script touches one hash slot (every key starts with the lottery's hash tag), so the
gate runs unchanged on Redis Cluster. Replies are IntEnums; lottery/draws.py turns them
into domain errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum
from importlib import resources
from typing import Any

from common.autopipeline import AutoPipeline
from common.metrics import Metrics
from common.redis_nodes import AnyRedis, RedisClock, register_script


class DrawCode(IntEnum):
    """Replies of lottery/lua/draw.lua."""

    HELD = 1
    IN_FLIGHT = 2
    DONE = 3
    REFUSED_BEFORE = 4
    KEY_REUSED = 5
    NOT_LOADED = 6
    NOT_ACTIVE = 7
    LIMIT_EXCEEDED = 8
    LAPSED = 10


class Resolve:
    """How resolve.lua settles a held draw."""

    DONE = "done"
    RELEASE = "release"
    REFUSED = "refused"
    GONE = "gone"


@dataclass(frozen=True)
class DrawReply:
    code: DrawCode
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class LotteryLoad:
    """What load.lua takes: the terms, each prize's (weight, left) in position order (left
    -1 = unlimited), and each member's (id, draws in total, draws today)."""

    starts_ms: int
    ends_ms: int
    daily: int
    total: int
    prizes: Sequence[tuple[int, int]]
    members: Sequence[tuple[str, int, int]]


class LotteryKeys:
    __slots__ = ("deadlines", "state", "tag", "totals")

    def __init__(self, lottery_id: str) -> None:
        # Built by concatenation: the braces are the hash tag and must survive.
        self.tag = "{lottery:" + lottery_id + "}"
        self.state = self.tag
        self.deadlines = self.tag + ":deadlines"
        self.totals = self.tag + ":totals"

    def record(self, hold_id: str) -> str:
        return self.tag + ":h:" + hold_id

    def day(self, day: str) -> str:
        return self.tag + ":day:" + day


def hold_id(member_id: str, idempotency_key: str) -> str:
    """A draw's hold, named by the member's key. The prefix keeps its points hold apart
    from a redemption's with the same key on the member's slot."""
    return "draw:" + member_id + ":" + idempotency_key


def utc_day(now: datetime) -> tuple[str, int]:
    """The UTC day the daily limit counts (docs/lottery.md), and seconds until its counters
    may go: the day's end plus an hour, so a draw held at 23:59 still finds them."""
    today: date = now.astimezone(UTC).date()
    end = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1, hours=1)
    return today.isoformat(), max(1, int((end - now).total_seconds()))


def _script(name: str) -> str:
    return (resources.files("lottery") / "lua" / name).read_text()


class LotteryGate:
    def __init__(
        self,
        redis: AnyRedis,
        *,
        calls: AutoPipeline,
        metrics: Metrics,
        record_ttl_seconds: int,
        refusal_ttl_seconds: int,
        retention_after_end_seconds: int,
    ) -> None:
        self._redis = redis
        self._calls = calls
        self._metrics = metrics
        self._ttl = record_ttl_seconds
        self._refusal_ttl = refusal_ttl_seconds
        self._retention_s = retention_after_end_seconds
        self._draw = register_script(redis, _script("draw.lua"))
        self._resolve = register_script(redis, _script("resolve.lua"))
        self._load = register_script(redis, _script("load.lua"))

    async def draw(
        self,
        lottery_id: str,
        member_id: str,
        hold: str,
        *,
        fingerprint: str,
        rand: int,
        hold_ttl_ms: int,
        now: datetime,
    ) -> DrawReply:
        k = LotteryKeys(lottery_id)
        day, day_ttl = utc_day(now)
        with self._metrics.redis_call("draw"):
            reply = await self._calls.call(
                self._draw,
                [k.state, k.record(hold), k.deadlines, k.totals, k.day(day)],
                [member_id, hold, fingerprint, rand, hold_ttl_ms, self._refusal_ttl, day_ttl, day],
            )
        return DrawReply(DrawCode(int(reply[0])), tuple(_text(v) for v in reply[1:]))

    async def resolve(
        self,
        lottery_id: str,
        member_id: str,
        hold: str,
        *,
        outcome: str,
        day: str,
        refusal: tuple[str, int, int] = ("", 0, 0),
    ) -> bool:
        """Settles a held draw once; False when nothing was held under `hold`."""
        k = LotteryKeys(lottery_id)
        with self._metrics.redis_call("draw_resolve"):
            reply = await self._calls.call(
                self._resolve,
                [k.state, k.record(hold), k.deadlines, k.totals, k.day(day)],
                [hold, member_id, outcome, *refusal, self._ttl, self._refusal_ttl],
            )
        return bool(int(reply[0]))

    async def held_record(self, lottery_id: str, hold: str) -> dict[str, str]:
        """A draw's record (empty when none): the sweeper reads its member and day."""
        raw = await self._redis.hgetall(LotteryKeys(lottery_id).record(hold))
        return {_text(a): _text(b) for a, b in raw.items()}

    async def lapsed(self, lottery_id: str, before_ms: int) -> list[str]:
        """Hold ids of draws past their deadline (the sweeper settles them)."""
        raw = await self._redis.zrangebyscore(LotteryKeys(lottery_id).deadlines, 0, before_ms)
        return [_text(h) for h in raw]

    async def now_ms(self, lottery_id: str) -> int:
        """Redis's clock as draw.lua on this lottery's slot sees it (its deadlines')."""
        return await RedisClock(self._redis).now_ms(LotteryKeys(lottery_id).state)

    async def load(self, lottery_id: str, load: LotteryLoad, *, now: datetime) -> bool:
        k = LotteryKeys(lottery_id)
        day, day_ttl = utc_day(now)
        ttl = max(1, (load.ends_ms - int(now.timestamp() * 1000)) // 1000 + self._retention_s)
        args: list[Any] = [
            ttl,
            day_ttl,
            load.starts_ms,
            load.ends_ms,
            load.daily,
            load.total,
            len(load.prizes),
        ]
        for weight, left in load.prizes:
            args += [weight, left]
        args.append(len(load.members))
        for member_id, total, today in load.members:
            args += [member_id, total, today]
        # A plain EVALSHA, not the auto-pipeline: `surge rebuild-cache` loads lotteries
        # without a running server.
        with self._metrics.redis_call("draw_load"):
            reply = await self._load(keys=[k.state, k.totals, k.day(day)], args=args)
        return bool(int(reply[0]))

    async def load_scripts(self) -> None:
        for script in (self._draw, self._resolve, self._load):
            await self._redis.script_load(script.script)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value
