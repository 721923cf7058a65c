"""The draw path, as a redemption's (flashsale/admission.py), on the lottery's slot:

1. validate; 2. draw.lua on {lottery:ID}: window, the member's limits, the prize picked by
   weight with the server's random number, its stock held; 3. the cost held on the member's
   slot (PointsGate.hold); 4. if 3 refuses, the prize and counts given back at once;
5. commit to PostgreSQL (DrawCommitter: commit_draws re-checks every guard on locked rows);
6. settle both holds in Redis (`settle_batch`), then answer.

Exactly once: a draw is named by (member_id, idempotency_key). Redis remembers the key's
held, refused or done draw; PostgreSQL's UNIQUE key is the last word, and a retry of a
committed key is answered from its row: the same prize.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from common import validation
from common.errors import (
    BelowRedemptionThreshold,
    DomainError,
    HoldExpired,
    IdempotencyKeyReused,
    InsufficientPoints,
    InvalidArgument,
    MemberFrozen,
    NotFound,
    RequestInProgress,
)
from flashsale.idempotency import InFlight
from flashsale.model import Address, Timing, new_redemption_code
from lottery import store
from lottery.committer import DrawCommitter, DrawEntry, DrawResult
from lottery.errors import DrawLimitExceeded, LotteryNotActive
from lottery.gate import DrawCode, LotteryGate, Resolve, hold_id, utc_day
from lottery.lotteries import Lotteries
from lottery.model import Draw, Drawn, Lottery
from points.gate import Hold, PointsGate
from points.members import Members

log = logging.getLogger(__name__)

# The random number each draw takes: [0, 2^52), exact in a Lua number (lottery/lua/draw.lua).
RANDOM_BOUND = 2**52
# Refusals a key keeps (its record answers them again); the window and a prize that ran out
# are not: a retry may find the lottery open, or draw again.
_SAVED = {
    "INSUFFICIENT_POINTS",
    "MEMBER_FROZEN",
    "BELOW_REDEMPTION_THRESHOLD",
    "LIMIT_TOTAL",
    "LIMIT_DAILY",
}
# Refusals Redis may give a retry of a committed key it no longer remembers: the member's
# counts (which include that draw) or the window (which may have closed since).
_MAY_HIDE_A_DRAW = {"TOTAL", "DAILY", "LIMIT_TOTAL", "LIMIT_DAILY"}
_ATTEMPTS = 3  # draws again after PostgreSQL found the drawn prize gone (Redis was behind)


def fingerprint(member_id: str, lottery_id: str, address: Address | None) -> str:
    """The request's identity for idempotency: stored with the draw; never change its bytes."""
    body = json.dumps(
        ["draw", member_id, lottery_id, asdict(address) if address else None], sort_keys=True
    )
    return hashlib.sha256(body.encode()).hexdigest()[:32]


class Draws:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        lotteries: Lotteries,
        members: Members,
        gate: LotteryGate,
        points_gate: PointsGate,
        timing: Timing,
        max_batch: int,
        workers: int,
        max_waiting: int,
    ) -> None:
        self._pool = pool
        self._lotteries = lotteries
        self._members = members
        self._gate = gate
        self._pgate = points_gate
        self._timing = timing
        self._in_flight = InFlight[Drawn](lambda first: Drawn(first.draw, replayed=True))
        self.committer = DrawCommitter(
            pool,
            after_commit=self.settle_batch,
            max_batch=max_batch,
            workers=workers,
            max_waiting=max_waiting,
        )

    async def draw(
        self,
        *,
        member_id: str,
        lottery_id: str,
        idempotency_key: str,
        shipping_address: Address | None,
    ) -> Drawn:
        member_id = validation.uuid_id("member_id", member_id)
        lottery_id = validation.uuid_id("lottery_id", lottery_id)
        key = validation.idempotency_key("idempotency_key", idempotency_key)
        terms = await self._lotteries.terms(lottery_id)
        goods = await self._lotteries.goods(lottery_id)
        address = None
        if shipping_address is not None:
            address = shipping_address.validated()
        elif any(physical for physical, _ in goods.values()):
            # Asked before drawing: a member who may win a parcel must say where it goes.
            raise InvalidArgument("shipping_address", "is required: a prize is a physical item")
        fp = fingerprint(member_id, lottery_id, address)

        async def attempts() -> Drawn:
            for _ in range(_ATTEMPTS):
                drawn = await self._draw_once(terms, goods, member_id, key, fp, address)
                if drawn is not None:
                    return drawn
            raise RequestInProgress(key)

        # One key, one outcome: a second call with the key while the first runs here waits
        # for the first's answer (a replay of the same prize) instead of racing it.
        return await self._in_flight.run(member_id, key, fp, attempts)

    async def get(self, *, member_id: str, draw_id: str) -> Draw:
        member_id = validation.uuid_id("member_id", member_id)
        draw_id = validation.uuid_id("draw_id", draw_id)
        async with self._pool.connection() as conn:
            found = await store.draw_by_id(conn, member_id, draw_id)
        if found is None:
            raise NotFound("draw", draw_id)
        return found

    async def _draw_once(
        self,
        terms: Lottery,
        goods: dict[str, tuple[bool, bool]],
        member_id: str,
        key: str,
        fp: str,
        address: Address | None,
    ) -> Drawn | None:
        """One pass of steps 2-6: the answer, or None to draw again."""
        lottery_id = terms.id
        hold = hold_id(member_id, key)
        now = datetime.now(UTC)
        day, _ = utc_day(now)
        self.committer.check_room()

        async def draw() -> tuple[DrawCode, tuple[object, ...]]:
            reply = await self._gate.draw(
                lottery_id,
                member_id,
                hold,
                fingerprint=fp,
                rand=secrets.randbelow(RANDOM_BOUND),
                hold_ttl_ms=int(self._timing.hold_ttl_s * 1000),
                now=now,
            )
            return reply.code, reply.values

        code, values = await draw()
        if code is DrawCode.NOT_LOADED:
            await self._lotteries.load_into_gate(lottery_id)
            code, values = await draw()
        match code:
            case DrawCode.KEY_REUSED:
                raise IdempotencyKeyReused(key)
            case DrawCode.DONE:
                return await self._replay(member_id, key, fp)
            case DrawCode.REFUSED_BEFORE | DrawCode.LIMIT_EXCEEDED:
                reason = str(values[0])
                if reason in _MAY_HIDE_A_DRAW:
                    committed = await self._committed(member_id, key, fp)
                    if committed is not None:
                        return committed
                raise _refusal(terms, member_id, reason, _int(values[1]), _int(values[2]))
            case DrawCode.NOT_ACTIVE:
                committed = await self._committed(member_id, key, fp)
                if committed is not None:
                    return committed
                raise _not_active(terms)
            case DrawCode.LAPSED:
                await self.settle_lapsed(lottery_id, hold)
                return None
            case DrawCode.IN_FLIGHT | DrawCode.NOT_LOADED:
                raise RequestInProgress(key)
        deadline_ms, prize_index = _int(values[0]), _int(values[1])
        prize = terms.prizes[prize_index - 1]

        # Step 3: the cost, on the member's slot; step 4 if it says no.
        async def hold_points() -> Hold:
            held = await self._pgate.hold(
                member_id, hold, terms.cost_points, deadline_ms=deadline_ms, campaign_id=lottery_id
            )
            if held.code is Hold.INSUFFICIENT:
                await self._give_back(
                    lottery_id, member_id, hold, day, ("INSUFFICIENT_POINTS", held.available, 0)
                )
                raise InsufficientPoints(member_id, held.available, terms.cost_points)
            return held.code

        code_points = await hold_points()
        if code_points is Hold.NOT_LOADED:
            if not await self._members.load_into_gate(member_id):
                await self._give_back(lottery_id, member_id, hold, day)
                raise NotFound("member", member_id)
            code_points = await hold_points()
        if code_points is Hold.FROZEN:
            await self._give_back(lottery_id, member_id, hold, day, ("MEMBER_FROZEN", 0, 0))
            raise MemberFrozen(member_id)
        if code_points is Hold.BELOW_THRESHOLD:
            await self._give_back(
                lottery_id, member_id, hold, day, ("BELOW_REDEMPTION_THRESHOLD", 0, 0)
            )
            raise BelowRedemptionThreshold(member_id)
        if code_points is Hold.NOT_LOADED:
            await self._give_back(lottery_id, member_id, hold, day)
            raise RequestInProgress(key)

        # Step 5: PostgreSQL, shared with every draw waiting then; step 6 in settle_batch.
        deadline = datetime.fromtimestamp(deadline_ms / 1000, UTC)
        redemption_id: str | None = None
        redemption_code: str | None = None
        shipping: dict[str, str] | None = None
        if prize.campaign_id is not None:  # a good: delivered as a redemption (stage B)
            physical, pool = goods[prize.id]
            redemption_id = str(uuid.uuid4())
            if physical:
                shipping = asdict(address) if address else None
            elif not pool:
                redemption_code = new_redemption_code()
        entry = DrawEntry(
            id=str(uuid.uuid4()),
            lottery_id=lottery_id,
            member_id=member_id,
            idempotency_key=key,
            request_hash=fp,
            prize_id=prize.id,
            cost_points=terms.cost_points,
            requested_at=now,
            fence=deadline - timedelta(seconds=self._timing.commit_fence_s),
            hold=hold,
            day=day,
            redemption_id=redemption_id,
            shipping_address=shipping,
            redemption_code=redemption_code,
        )
        result = await self.committer.submit(entry)
        match result.outcome:
            case "COMMITTED":
                made = Draw(
                    id=entry.id,
                    lottery_id=lottery_id,
                    member_id=member_id,
                    prize=prize,
                    cost_points=entry.cost_points,
                    redemption_id=result.redemption_id,
                    idempotency_key=key,
                    created_at=now,
                )
                return Drawn(made, replayed=False)
            case "EXISTING":
                if result.request_hash != fp:
                    raise IdempotencyKeyReused(key)
                return await self._replay(member_id, key, fp)
            case "PRIZE_GONE":
                log.warning("PostgreSQL found a drawn prize gone: Redis was behind; drawing again")
                return None
            case "HOLD_EXPIRED":
                raise HoldExpired(key)
            case "NOT_FOUND":
                raise NotFound("member", member_id)
        log.warning(
            "PostgreSQL refused a draw Redis admitted (%s): Redis was behind", result.outcome
        )
        raise _refusal(terms, member_id, result.outcome, 0, 0)

    async def _committed(self, member_id: str, key: str, fp: str) -> Drawn | None:
        """The key's committed draw as a replay, if PostgreSQL has one.

        Redis may refuse a retry of a committed key by the member's count or the window
        when it no longer has the key's record (flushed, failed over, or past its TTL,
        then loaded again with the member's counts, which include this very draw): the
        draw was paid for, so the retry answers it, not a refusal."""
        async with self._pool.connection() as conn:
            found = await store.draw_by_key(conn, member_id, key)
        if found is not None:
            draw, request_hash = found
            if request_hash != fp:
                raise IdempotencyKeyReused(key)
            return Drawn(draw, replayed=True)
        return None

    async def _replay(self, member_id: str, key: str, fp: str) -> Drawn:
        async with self._pool.connection() as conn:
            found = await store.draw_by_key(conn, member_id, key)
        if found is None:  # Redis says done, PostgreSQL has no row yet: let them retry
            raise RequestInProgress(key)
        draw, request_hash = found
        if request_hash != fp:
            raise IdempotencyKeyReused(key)
        return Drawn(draw, replayed=True)

    async def _give_back(
        self,
        lottery_id: str,
        member_id: str,
        hold: str,
        day: str,
        refusal: tuple[str, int, int] | None = None,
    ) -> None:
        outcome = Resolve.RELEASE if refusal is None else Resolve.REFUSED
        await self._gate.resolve(
            lottery_id, member_id, hold, outcome=outcome, day=day, refusal=refusal or ("", 0, 0)
        )

    async def settle_batch(self, pairs: list[tuple[DrawEntry, DrawResult]]) -> None:
        """Step 6, for a committed batch: each draw's record and its points hold settled,
        the member's mirror applied. Never raises for one draw's failure: the sweeper
        settles what is left held."""
        results = await asyncio.gather(
            *(self._settle(entry, result) for entry, result in pairs), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                log.warning("settling a draw in Redis failed (%s)", type(r).__name__)

    async def _settle(self, entry: DrawEntry, result: DrawResult) -> None:
        refusal = ("", 0, 0)
        if result.outcome == "COMMITTED":
            outcome = Resolve.DONE
        elif result.outcome == "PRIZE_GONE":
            outcome = Resolve.GONE
        elif result.outcome in _SAVED:
            outcome, refusal = Resolve.REFUSED, (result.outcome, 0, 0)
        else:
            outcome = Resolve.RELEASE
        await self._gate.resolve(
            entry.lottery_id,
            entry.member_id,
            entry.hold,
            outcome=outcome,
            day=entry.day,
            refusal=refusal,
        )
        if result.member is not None:
            await self._pgate.mirror_committed(entry.member_id, result.member, hold_id=entry.hold)
        else:
            await self._pgate.settle(entry.member_id, hold_id=entry.hold)

    async def settle_lapsed(self, lottery_id: str, hold: str) -> bool:
        """A draw held past its deadline (its commit fence passed, so PostgreSQL will never
        take it now): done if PostgreSQL has its key, else given back on both slots (the
        prize's stock, the member's counts and the points hold). True if it was held."""
        record = await self._gate.held_record(lottery_id, hold)
        if record.get("state") != "held":
            return False
        member_id, day = record["member"], record.get("day", "")
        key = hold.split(":", 2)[2]
        async with self._pool.connection() as conn:
            committed = await store.draw_by_key(conn, member_id, key)
        outcome = Resolve.DONE if committed is not None else Resolve.RELEASE
        settled = await self._gate.resolve(lottery_id, member_id, hold, outcome=outcome, day=day)
        await self._pgate.settle(member_id, hold_id=hold)
        if committed is not None:
            # Its commit's answer never reached Redis: the member's mirror still counts the
            # points it spent (dropping the hold made them look spendable). The sweeper
            # reloads the member from PostgreSQL.
            self._pgate.stale.mark(member_id)
        return settled

    async def sweep_lapsed(self) -> int:
        """The sweeper's leader pass (flashsale/sweeper.py): settles every draw held past
        its deadline (a server killed mid-draw, a settle lost) in the lotteries open or
        ended within the last hour; how many it settled."""
        async with self._pool.connection() as conn:
            lotteries = await store.lotteries_to_watch(conn)
        swept = 0
        for lottery_id in lotteries:
            now_ms = await self._gate.now_ms(lottery_id)
            for hold in await self._gate.lapsed(lottery_id, now_ms):
                swept += int(await self.settle_lapsed(lottery_id, hold))
        return swept


def _int(value: object) -> int:
    return int(str(value)) if value is not None else 0


def _refusal(terms: Lottery, member_id: str, reason: str, n1: int, n2: int) -> DomainError:
    match reason:
        case "TOTAL" | "LIMIT_TOTAL":
            limit = terms.per_member_total
            return DrawLimitExceeded(terms.id, "total", limit, n2 or limit)
        case "DAILY" | "LIMIT_DAILY":
            limit = terms.per_member_daily
            return DrawLimitExceeded(terms.id, "daily", limit, n2 or limit)
        case "INSUFFICIENT_POINTS":
            return InsufficientPoints(member_id, n1, terms.cost_points)
        case "MEMBER_FROZEN":
            return MemberFrozen(member_id)
        case "BELOW_REDEMPTION_THRESHOLD":
            return BelowRedemptionThreshold(member_id)
    return _not_active(terms)


def _not_active(terms: Lottery) -> LotteryNotActive:
    return LotteryNotActive(terms.id, terms.starts_at.isoformat(), terms.ends_at.isoformat())
