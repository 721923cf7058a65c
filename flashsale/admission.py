"""The redemption path, as DESIGN-NOTES draws it:

1. validate; 2. hold units on the campaign's slot; 3. hold points on the member's slot;
4. if 3 refuses, give the units back at once; 5. commit to PostgreSQL (group commit);
6. settle both holds in Redis (one resolve per campaign, one settle per hold, sharing
   the auto-pipeline's round trips), then answer.

Exactly once: a redemption is named by (member_id, idempotency_key). Redis remembers the
key's hold, refusal or commit; PostgreSQL's UNIQUE key is the last word. Two calls with one
key in this process share one outcome; across processes the second finds the first's hold
and both converge on the one row PostgreSQL keeps.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from common import validation
from common.errors import (
    BelowRedemptionThreshold,
    HoldExpired,
    IdempotencyKeyReused,
    InsufficientPoints,
    InvalidArgument,
    LimitExceeded,
    MemberFrozen,
    NotFound,
    RequestInProgress,
    SoldOut,
)
from common.metrics import Metrics
from flashsale import idempotency, pricing, refusals, shards
from flashsale.campaigns import CampaignMeta, Campaigns
from flashsale.committer import REFUSALS, CommitEntry, GroupCommitter
from flashsale.gate import CampaignGate, Outcome, Reserve, hold_id
from flashsale.model import (
    MAX_QUANTITY,
    Address,
    Redeemed,
    RedeemRequest,
    Redemption,
    RedemptionStatus,
    Timing,
    new_redemption_code,
)
from flashsale.settle import Settler
from inventory.items import ItemKind
from points.gate import Claim, Hold, PointsGate
from points.members import Members

log = logging.getLogger(__name__)


class Admission:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        campaigns: Campaigns,
        members: Members,
        campaign_gate: CampaignGate,
        points_gate: PointsGate,
        committer: GroupCommitter,
        settler: Settler,
        timing: Timing,
        metrics: Metrics,
        pricer: pricing.Pricer,
    ) -> None:
        self._metrics = metrics
        self._pricer = pricer
        self._pool = pool
        self._campaigns = campaigns
        self._members = members
        self._cgate = campaign_gate
        self._pgate = points_gate
        self._committer = committer
        self._settler = settler
        self._timing = timing
        self._in_flight = idempotency.InFlight[Redeemed](
            lambda first: Redeemed(first.redemption, replayed=True)
        )

    async def redeem(self, request: RedeemRequest) -> Redeemed:
        """Redeems, and counts the outcome (surge_redemptions_total)."""
        try:
            redeemed = await self._redeem_once(request)
        except BaseException as e:
            self._metrics.count_redemption(refusals.outcome_of(e))
            raise
        if redeemed.replayed:
            outcome = "replayed"
        elif redeemed.redemption.status is RedemptionStatus.PENDING_PAYMENT:
            outcome = "pending_payment"
        else:
            outcome = "committed"
        self._metrics.count_redemption(outcome)
        return redeemed

    async def _redeem_once(self, request: RedeemRequest) -> Redeemed:
        member_id = validation.uuid_id("member_id", request.member_id)
        campaign_id = validation.uuid_id("campaign_id", request.campaign_id)
        validation.int_range("quantity", request.quantity, minimum=1, maximum=MAX_QUANTITY)
        key = validation.idempotency_key("idempotency_key", request.idempotency_key)
        meta = await self._campaigns.meta(campaign_id)
        if meta.lottery_prize:  # its units are won by a draw, paid for by the draw's cost
            raise InvalidArgument("campaign_id", "is a lottery's prize: won by Draw, not redeemed")
        if meta.code_pool and request.quantity != 1:
            # One code per redemption: a pool's code is one unit (docs/design.md, code pools).
            raise InvalidArgument("quantity", "must be 1 for an item whose codes come from a pool")
        address = None
        if meta.item_kind is ItemKind.PHYSICAL:
            if request.shipping_address is None:
                raise InvalidArgument("shipping_address", "is required for a physical item")
            address = request.shipping_address.validated()
        fingerprint = idempotency.fingerprint(member_id, campaign_id, request.quantity, address)

        # One key, one outcome: a second call with the key while the first runs here waits
        # for the first's answer instead of racing it.
        return await self._in_flight.run(
            member_id,
            key,
            fingerprint,
            lambda: self._redeem(meta, member_id, key, request.quantity, address, fingerprint),
        )

    async def _redeem(
        self,
        meta: CampaignMeta,
        member_id: str,
        key: str,
        quantity: int,
        address: Address | None,
        fingerprint: str,
    ) -> Redeemed:
        # While this redemption is admitted, the committer knows one more entry is coming.
        with self._committer.approaching():
            entry = await self._admit(meta, member_id, key, quantity, address, fingerprint)
        if entry is None:  # the key is in PostgreSQL already
            return await idempotency.replay_saved(self._pool, member_id, key, fingerprint)
        result = await self._committer.submit(entry)

        # Step 6 ran in the committer (Settler.settle_batch); here the answer.
        if result.outcome in ("COMMITTED", "PENDING_PAYMENT"):
            status = RedemptionStatus(result.outcome)
            made = replace(_from_entry(entry, meta, status), points_back=result.points_back)
            if result.redemption_code != made.redemption_code:  # taken from the item's pool
                made = replace(made, redemption_code=result.redemption_code)
            return Redeemed(made, replayed=False)
        if result.outcome == "EXISTING":
            if result.request_hash != fingerprint:
                raise IdempotencyKeyReused(key)
            return await idempotency.replay_saved(self._pool, member_id, key, fingerprint)
        if result.outcome in REFUSALS:
            log.warning(
                "PostgreSQL refused what Redis admitted (%s): Redis was behind", result.outcome
            )
            raise refusals.pg_refusal(meta, member_id, result)
        if result.outcome == "HOLD_EXPIRED":
            raise HoldExpired(key)
        raise NotFound("member", member_id)

    async def _admit(
        self,
        meta: CampaignMeta,
        member_id: str,
        key: str,
        quantity: int,
        address: Address | None,
        fingerprint: str,
    ) -> CommitEntry | None:
        """Steps 2-4: units and points held in Redis; the entry to commit (step 5), or None
        when the key is already done. Raises the refusal otherwise."""
        hold = hold_id(member_id, key)
        k = meta.stock_shards  # > 1: a split campaign, held on the member's home shard
        where = shards.home(meta.id, member_id, k)
        requested_at = datetime.now(UTC)
        deadline_ms = 0  # Redis's clock sets it: the reply of a held reserve carries it

        # Step 2: units, on the campaign's slot.
        async def reserve(remember_sold_out: bool = k <= 1) -> Any:
            return await self._cgate.reserve(
                where,
                member_id,
                hold,
                quantity=quantity,
                fingerprint=fingerprint,
                hold_ttl_ms=int(self._timing.hold_ttl_s * 1000),
                remember_sold_out=remember_sold_out,
            )

        # The key's binding on the member's slot goes in the same round trip: one key, one
        # request, across campaigns (the campaign's record sees only its own campaign).
        units, claim = await asyncio.gather(
            reserve(), self._pgate.claim(member_id, key, fingerprint)
        )
        if claim is Claim.KEY_REUSED:
            if units.code is Reserve.HELD:  # this call's own new hold: give it back
                await self._give_back(where, member_id, hold, fingerprint, Outcome.RELEASE)
            raise IdempotencyKeyReused(key)
        if units.code is Reserve.NOT_LOADED:
            await self._campaigns.load_into_gate(meta.id)
            units = await reserve()
        if units.code is Reserve.LAPSED:
            # This key's earlier hold lapsed unswept: settle it as the sweeper would (done
            # if PostgreSQL has the key, else released), then ask again.
            lapsed_before_ms = int(units.values[0]) + 1
            await self._settler.settle_lapsed_holds(meta.id, [hold], lapsed_before_ms, slot=where)
            units = await reserve()
        if units.code is Reserve.SOLD_OUT and k > 1:  # move units in from the other shards
            spread = await self._cgate.shards.reserve_spread(
                meta.id, k, member_id, quantity, reserve
            )
            if spread is None:
                raise RequestInProgress(key)
            units = spread
        match units.code:
            case Reserve.KEY_REUSED:
                raise IdempotencyKeyReused(key)
            case Reserve.DONE:
                return None
            case Reserve.REFUSED_BEFORE:
                raise refusals.refusal(meta, member_id, *units.values[:3])
            case Reserve.NOT_ACTIVE:
                raise refusals.not_active(meta)
            case Reserve.LIMIT_EXCEEDED:
                raise LimitExceeded(meta.id, int(units.values[0]), int(units.values[1]))
            case Reserve.SOLD_OUT:
                raise SoldOut(meta.id, int(units.values[0]))
            case Reserve.HELD | Reserve.IN_FLIGHT:
                deadline_ms = int(units.values[0])
            case Reserve.NOT_LOADED | Reserve.LAPSED:
                raise RequestInProgress(key)  # state changed twice in a row: let them retry

        # Step 3: points, on the member's slot; step 4 if it says no. The price is the one in
        # force now (flashsale/pricing.py), stored with the redemption for its replays.
        price = await self._pricer.price(
            meta.price_rules,
            list_price=meta.points_price,
            member_id=member_id,
            now=requested_at,
            campaign_ends_at=meta.ends_at,
        )
        points = price.total(quantity)
        held = await self._pgate.hold(
            member_id, hold, points, deadline_ms=deadline_ms, campaign_id=meta.id
        )
        if held.code is Hold.NOT_LOADED:
            if not await self._members.load_into_gate(member_id):
                await self._give_back(where, member_id, hold, fingerprint, Outcome.RELEASE)
                raise NotFound("member", member_id)
            held = await self._pgate.hold(
                member_id, hold, points, deadline_ms=deadline_ms, campaign_id=meta.id
            )
        if held.code is Hold.INSUFFICIENT:
            await self._give_back(
                where,
                member_id,
                hold,
                fingerprint,
                Outcome.REFUSED,
                ("INSUFFICIENT_POINTS", held.available, points),
            )
            raise InsufficientPoints(member_id, held.available, points)
        if held.code is Hold.FROZEN:
            await self._give_back(
                where, member_id, hold, fingerprint, Outcome.REFUSED, ("MEMBER_FROZEN", 0, 0)
            )
            raise MemberFrozen(member_id)
        if held.code is Hold.BELOW_THRESHOLD:
            await self._give_back(
                where,
                member_id,
                hold,
                fingerprint,
                Outcome.REFUSED,
                ("BELOW_REDEMPTION_THRESHOLD", 0, 0),
            )
            raise BelowRedemptionThreshold(member_id)
        if held.code is Hold.NOT_LOADED:
            await self._give_back(where, member_id, hold, fingerprint, Outcome.RELEASE)
            raise RequestInProgress(key)

        # Step 5 (by the caller): PostgreSQL, shared with every redemption waiting then.
        redemption_id = str(uuid.uuid4())
        payment_due = None
        if meta.needs_payment:
            payment_due = requested_at + timedelta(seconds=self._timing.payment_window_s)
        code = None  # a pool item's code is taken by the commit (commit_redemptions.sql)
        if meta.item_kind is ItemKind.VIRTUAL and payment_due is None and not meta.code_pool:
            code = new_redemption_code()
        deadline = datetime.fromtimestamp(deadline_ms / 1000, UTC)
        return CommitEntry(
            id=redemption_id,
            member_id=member_id,
            campaign_id=meta.id,
            quantity=quantity,
            points_total=points,
            list_points_total=price.list_total(quantity),
            price_rule_id=price.rule.id if price.rule is not None else None,
            cash_total_cents=meta.cash_price_cents * quantity,
            idempotency_key=key,
            request_hash=fingerprint,
            shipping_address=asdict(address) if address else None,
            redemption_code=code,
            requested_at=requested_at,
            fence=deadline - timedelta(seconds=self._timing.commit_fence_s),
            payment_due_at=payment_due,
        )

    async def _give_back(
        self,
        campaign_id: str,
        member_id: str,
        hold: str,
        fingerprint: str,
        outcome: str,
        refusal: tuple[str, int, int] = ("", 0, 0),
    ) -> None:
        await self._cgate.resolve(
            campaign_id, member_id, hold, fingerprint=fingerprint, outcome=outcome, refusal=refusal
        )


# -- Pure helpers ------------------------------------------------------------------------


def _from_entry(entry: CommitEntry, meta: CampaignMeta, status: RedemptionStatus) -> Redemption:
    return Redemption(
        id=entry.id,
        member_id=entry.member_id,
        campaign_id=entry.campaign_id,
        item_id=meta.item_id,
        quantity=entry.quantity,
        points_total=entry.points_total,
        list_points_total=entry.list_points_total,
        price_rule_id=entry.price_rule_id,
        cash_total_cents=entry.cash_total_cents,
        status=status,
        redemption_code=entry.redemption_code,
        shipping_address=Address(**entry.shipping_address) if entry.shipping_address else None,
        idempotency_key=entry.idempotency_key,
        created_at=entry.requested_at,
        updated_at=entry.requested_at,
        payment_due_at=entry.payment_due_at,
        payment_reference=None,
        bundle_parts=meta.bundle,
    )
