"""Stock shards: a hot campaign's allotment split across K Redis hash slots.

A campaign created with `stock_shards` K > 1 keeps its units in K shards `{campaign:ID:k}`,
each with the keys and shape of a one-slot campaign (state, records, deadlines, mheld,
taken, tver), so reserve.lua and resolve.lua run on a shard unchanged. K = 1 is today's
one slot `{campaign:ID}` and today's path: nothing here runs for it. PostgreSQL knows
nothing of shards: its guards cap the campaign's total and each member's units.

- A member's home shard is crc32(member id) mod K. All of that member's holds, idempotency
  records and per-member counts live there, so a retry finds its record, a key can never be
  held on two shards, and the per-member limit is checked in one place.
- The home shard answers SOLD_OUT without remembering it. The caller then moves free units
  in from the other shards (`transfer`: take on the source, give on the home shard, done on
  the source; a crash between leaves a record the leader's sweeper completes) and reserves
  again. SOLD_OUT is answered, and remembered, only when the shards together cannot serve
  the request (`reserve_spread`).
- A shard's `taken` is its own: resolve.lua adds a hold's units when it resolves done
  (version -1, `shard_mirror`); PostgreSQL's campaign total never overwrites it.
- A load (first use, `surge rebuild-cache`) creates a missing shard with its share of what
  PostgreSQL says remains (allotment - taken) and of what it says is taken, and leaves a
  present one as it is. One shard lost alone comes back with its share again, so Redis
  may admit more than remains in sum; PostgreSQL's guard refuses those (SOLD_OUT).
"""

from __future__ import annotations

import asyncio
import uuid
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources

from common.metrics import Metrics
from common.redis_nodes import AnyRedis, register_script
from flashsale.gate import (
    CampaignGate,
    CampaignKeys,
    CampaignLoad,
    CampaignMirror,
    Reserve,
    ReserveReply,
)

# resolve.lua's version for a shard: count done holds into the shard's own taken.
SHARD_TAKEN = -1
# Rounds of "move units in, reserve again" before a call gives up with a retryable answer
# (others keep taking what it moved in, or a transfer in flight never lands).
ROUNDS = 10
_TRANSIT_WAIT_S = 0.01


def slot(campaign_id: str, index: int) -> str:
    """The id CampaignKeys takes for shard `index`: its tag is {campaign:ID:index}."""
    return campaign_id + ":" + str(index)


def home_index(member_id: str, shards: int) -> int:
    """Stable across processes and restarts (not Python's salted hash)."""
    return zlib.crc32(member_id.encode()) % shards


def home(campaign_id: str, member_id: str, shards: int) -> str:
    """The slot id of the member's holds: the campaign's own for K = 1."""
    if shards <= 1:
        return campaign_id
    return slot(campaign_id, home_index(member_id, shards))


def slots(campaign_id: str, shards: int) -> list[str]:
    if shards <= 1:
        return [campaign_id]
    return [slot(campaign_id, i) for i in range(shards)]


def shares(units: int, shards: int) -> list[int]:
    """`units` split as evenly as can be, the first shards taking one more."""
    base, extra = divmod(max(0, units), shards)
    return [base + (1 if i < extra else 0) for i in range(shards)]


def shard_mirror(mirror: CampaignMirror | None, *, split: bool) -> CampaignMirror | None:
    """A resolve's mirror: unchanged for a campaign's own slot; for a stock shard, the
    member's counters only, and done holds counted into the shard's own taken."""
    if not split:
        return mirror
    m = mirror or CampaignMirror(0, 0, 0, 0)
    return CampaignMirror(0, SHARD_TAKEN, m.member_taken, m.member_version)


@dataclass(frozen=True)
class ShardUnits:
    """One shard's counters: free = allotted - taken - held (None-safe: 0 when unloaded)."""

    loaded: bool
    allotted: int
    taken: int
    held: int
    holds: int
    in_transit: int  # transfers out of this shard not yet done

    @property
    def free(self) -> int:
        return max(0, self.allotted - self.taken - self.held)


def _script(name: str) -> str:
    return (resources.files("flashsale") / "lua" / name).read_text()


def _record(tag: str, transfer_id: str) -> str:
    return tag + ":x:" + transfer_id


def _transfers(tag: str) -> str:
    return tag + ":transfers"


def _marker(tag: str, transfer_id: str) -> str:
    return tag + ":xin:" + transfer_id


class ShardGate:
    """The Redis side of split campaigns; built by CampaignGate (its `shards`)."""

    def __init__(
        self, gate: CampaignGate, redis: AnyRedis, *, metrics: Metrics, retention_ms: int
    ) -> None:
        self._gate = gate
        self._redis = redis
        self._metrics = metrics
        self._retention_ms = retention_ms
        self._load = register_script(redis, _script("shard_load.lua"))
        self._take = register_script(redis, _script("transfer_take.lua"))
        self._give = register_script(redis, _script("transfer_give.lua"))
        self._done = register_script(redis, _script("transfer_done.lua"))
        self._return = register_script(redis, _script("shard_return.lua"))

    async def load_scripts(self) -> None:
        for script in (self._load, self._take, self._give, self._done, self._return):
            await self._redis.script_load(script.script)

    async def load(self, campaign_id: str, shards: int, state: CampaignLoad) -> bool:
        """Creates missing shards with their share of what remains in PostgreSQL; refreshes
        present ones (terms by their version, members' counters on their home shard)."""
        # Each shard takes its share of what remains and of what is taken, so that the
        # shards add up to the campaign (the audit checks it) whatever was sold before.
        taken = shares(state.taken, shards)
        remaining = shares(state.allotted - state.taken, shards)
        share = [t + r for t, r in zip(taken, remaining, strict=True)]
        members: list[list[str | int]] = [[] for _ in range(shards)]
        for member_id, units, version in state.members:
            members[home_index(member_id, shards)] += [member_id, units, version]
        created = False
        self._metrics.cache_loads.labels("campaign").inc()
        for i in range(shards):
            k = CampaignKeys(slot(campaign_id, i))
            reply = await self._load(
                keys=[k.state, k.taken, k.tver],
                args=[
                    share[i],
                    state.limit,
                    state.starts_ms,
                    state.ends_ms,
                    self._retention_ms,
                    state.meta_version,
                    state.allotted,
                    1 if i == 0 else 0,
                    taken[i],
                    *members[i],
                ],
            )
            created = bool(int(reply[0])) or created
        return created

    async def units(self, campaign_id: str, shards: int) -> list[ShardUnits]:
        """Every shard's counters, in one round trip (not one atomic read: see
        reserve_spread for why a sold-out verdict reads twice)."""
        pipe = self._gate.pipeline()
        for i in range(shards):
            k = CampaignKeys(slot(campaign_id, i))
            pipe.hmget(k.state, "allotted", "taken", "held")
            pipe.zcard(k.deadlines)
            pipe.zcard(_transfers(k.tag))
        replies = await pipe.execute()
        result = []
        for i in range(shards):
            (allotted, taken, held), holds, transit = replies[3 * i : 3 * i + 3]
            result.append(
                ShardUnits(
                    allotted is not None,
                    int(allotted or 0),
                    int(taken or 0),
                    int(held or 0),
                    int(holds),
                    int(transit),
                )
            )
        return result

    async def reserve_spread(
        self,
        campaign_id: str,
        shards: int,
        member_id: str,
        quantity: int,
        reserve: Callable[[bool], Awaitable[ReserveReply]],
    ) -> ReserveReply | None:
        """After the home shard answered SOLD_OUT (not remembered): moves free units in from
        the other shards and reserves again (`reserve(remember_sold_out)`). SOLD_OUT only
        when the shards together have fewer than `quantity` free units and none in transit,
        read twice in a row (a read spans slots, so a transfer could slip between its
        parts), and then from the home shard's own atomic check, which remembers it. None
        when ROUNDS pass without a verdict: the caller answers with a retryable error."""
        mine = home_index(member_id, shards)
        empty_reads = 0
        for _ in range(ROUNDS):
            units = await self.units(campaign_id, shards)
            need = quantity - units[mine].free
            others = sum(u.free for i, u in enumerate(units) if i != mine)
            if need > others:
                if any(u.in_transit for u in units):
                    empty_reads = 0
                    await asyncio.sleep(_TRANSIT_WAIT_S)
                    continue
                empty_reads += 1
                if empty_reads < 2:
                    continue
                reply = await reserve(True)
                if reply.code is Reserve.SOLD_OUT:
                    return ReserveReply(Reserve.SOLD_OUT, (sum(u.free for u in units),))
                return reply
            empty_reads = 0
            if need > 0:
                await self._gather(campaign_id, units, mine, need)
            reply = await reserve(False)
            if reply.code is not Reserve.SOLD_OUT:
                return reply
        return None

    async def _gather(
        self, campaign_id: str, units: list[ShardUnits], mine: int, need: int
    ) -> None:
        """Moves at least `need` units to shard `mine`, fullest shards first, taking half
        of a donor's free units when that is more: the next callers there find them."""
        donors = sorted(
            (i for i, u in enumerate(units) if i != mine and u.free > 0),
            key=lambda i: -units[i].free,
        )
        for i in donors:
            if need <= 0:
                return
            free = units[i].free
            need -= await self.transfer(campaign_id, i, mine, min(free, max(need, free // 2)))

    async def transfer(self, campaign_id: str, source: int, dest: int, units: int) -> int:
        """Moves up to `units` free units from shard `source` to shard `dest`; how many."""
        transfer_id = uuid.uuid4().hex
        src = CampaignKeys(slot(campaign_id, source))
        with self._metrics.redis_call("transfer"):
            moved = int(
                await self._take(
                    keys=[src.state, _record(src.tag, transfer_id), _transfers(src.tag)],
                    args=[units, transfer_id, dest],
                )
            )
            if moved > 0:
                await self._finish(campaign_id, source, dest, transfer_id, moved)
        return moved

    async def _finish(
        self, campaign_id: str, source: int, dest: int, transfer_id: str, units: int
    ) -> None:
        """Steps 2 and 3 of a transfer; each is idempotent, so running them again is safe."""
        src, dst = CampaignKeys(slot(campaign_id, source)), CampaignKeys(slot(campaign_id, dest))
        await self._give(keys=[dst.state, _marker(dst.tag, transfer_id)], args=[units])
        await self._done(
            keys=[_record(src.tag, transfer_id), _transfers(src.tag)], args=[transfer_id]
        )

    async def complete_transfers(self, campaign_id: str, shards: int, before_ms: int) -> int:
        """The sweeper's step: finishes transfers started before `before_ms` (Redis's
        clock) and not done, those a crash interrupted. Returns how many."""
        finished = 0
        for source in range(shards):
            k = CampaignKeys(slot(campaign_id, source))
            ids = await self._redis.zrangebyscore(_transfers(k.tag), "-inf", before_ms)
            for raw in ids:
                transfer_id = raw.decode() if isinstance(raw, bytes) else str(raw)
                units, dest = await self._redis.hmget(_record(k.tag, transfer_id), "n", "to")
                if units is None or dest is None:
                    await self._redis.zrem(_transfers(k.tag), transfer_id)
                    continue
                await self._finish(campaign_id, source, int(dest), transfer_id, int(units))
                finished += 1
        return finished

    async def return_units(
        self, campaign_id: str, shards: int, member_id: str, redemption_id: str, units: int
    ) -> int:
        """A cancelled or expired redemption's units back to its member's home shard, once
        (shard_return.lua). 1 returned, 0 before, -1 the shard is not loaded."""
        k = CampaignKeys(home(campaign_id, member_id, shards))
        marker = k.tag + ":ret:" + redemption_id
        return int(await self._return(keys=[k.state, marker], args=[units]))

    async def in_flight_many(
        self, campaigns: Sequence[tuple[str, int, int]]
    ) -> list[tuple[int, int]]:
        """CampaignGate.in_flight_many for (campaign id, stock shards, PostgreSQL taken):
        a split campaign's units and holds summed over its shards."""
        plain = [(c, taken) for c, shards, taken in campaigns if shards <= 1]
        replies = iter(await self._gate.in_flight_many(plain) if plain else [])
        result = []
        for campaign_id, shards, pg_taken in campaigns:
            if shards <= 1:
                result.append(next(replies))
                continue
            units = await self.units(campaign_id, shards)
            held = sum(u.held for u in units)
            # PostgreSQL counts units whose holds Redis has not settled yet: not new ones.
            committed_unsettled = max(0, pg_taken - sum(u.taken for u in units))
            result.append((max(0, held - committed_unsettled), sum(u.holds for u in units)))
        return result

    async def remaining_many(self, campaigns: Sequence[tuple[str, int]]) -> list[int | None]:
        """CampaignGate.remaining_many for (campaign id, stock shards): a split campaign's
        free units summed over its shards; None if no shard is loaded."""
        plain = [c for c, shards in campaigns if shards <= 1]
        replies = iter(await self._gate.remaining_many(plain) if plain else [])
        result: list[int | None] = []
        for campaign_id, shards in campaigns:
            if shards <= 1:
                result.append(next(replies))
                continue
            units = await self.units(campaign_id, shards)
            loaded = any(u.loaded for u in units)
            result.append(sum(u.free for u in units) if loaded else None)
        return result
