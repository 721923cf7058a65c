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
import base64
import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg
import psycopg_pool
import redis.exceptions
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from common import paging, validation
from common.errors import (
    BelowRedemptionThreshold,
    CampaignNotActive,
    DomainError,
    HoldExpired,
    IdempotencyKeyReused,
    InsufficientPoints,
    InvalidArgument,
    LimitExceeded,
    MemberFrozen,
    NotCancellable,
    NotFound,
    PaymentNotPending,
    PaymentWindowClosed,
    RequestInProgress,
    SoldOut,
    Unavailable,
)
from common.metrics import Metrics
from flashsale.campaigns import CampaignMeta, Campaigns
from flashsale.committer import CommitEntry, CommitResult, GroupCommitter
from flashsale.gate import CampaignGate, CampaignMirror, Outcome, Reserve, Resolution, hold_id
from inventory.items import ItemKind
from points.gate import Hold, MemberMirror, PointsGate
from points.members import Members

log = logging.getLogger(__name__)
MAX_QUANTITY = 1000
_ADDRESS_MAX = 200


class RedemptionStatus(StrEnum):
    PENDING_PAYMENT = "PENDING_PAYMENT"
    COMMITTED = "COMMITTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True)
class Address:
    recipient: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country_code: str = ""
    phone: str = ""

    def validated(self) -> Address:
        values: dict[str, str] = {}
        for name, value in asdict(self).items():
            required = name in ("recipient", "line1", "city", "postal_code", "country_code")
            values[name] = validation.text(
                f"shipping_address.{name}", value, max_length=_ADDRESS_MAX, required=required
            )
        code = values["country_code"]
        if len(code) != 2 or not code.isalpha() or not code.isascii():
            raise InvalidArgument("shipping_address.country_code", "must be 2 letters (ISO 3166-1)")
        values["country_code"] = code.upper()
        return Address(**values)


@dataclass(frozen=True)
class RedeemRequest:
    member_id: str
    campaign_id: str
    quantity: int
    idempotency_key: str
    shipping_address: Address | None = None


@dataclass(frozen=True)
class Redemption:
    id: str
    member_id: str
    campaign_id: str
    item_id: str
    quantity: int
    points_total: int
    cash_total_cents: int
    status: RedemptionStatus
    redemption_code: str | None
    shipping_address: Address | None
    idempotency_key: str
    created_at: datetime
    updated_at: datetime
    payment_due_at: datetime | None
    payment_reference: str | None


@dataclass(frozen=True)
class Redeemed:
    redemption: Redemption
    replayed: bool


@dataclass(frozen=True)
class RedemptionPage:
    redemptions: list[Redemption]
    next_page_token: str


@dataclass(frozen=True)
class Timing:
    hold_ttl_s: float
    commit_fence_s: float
    payment_window_s: float


_PG_REFUSALS = {
    "SOLD_OUT",
    "LIMIT_EXCEEDED",
    "INSUFFICIENT_POINTS",
    "MEMBER_FROZEN",
    "CAMPAIGN_NOT_ACTIVE",
    "BELOW_REDEMPTION_THRESHOLD",
}


class Redemptions:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        campaigns: Campaigns,
        members: Members,
        campaign_gate: CampaignGate,
        points_gate: PointsGate,
        timing: Timing,
        metrics: Metrics,
        max_batch: int = 256,
        commit_workers: int = 2,
        commit_linger_s: float = 0.0,
    ) -> None:
        self._metrics = metrics
        self._pool = pool
        self._campaigns = campaigns
        self._members = members
        self._cgate = campaign_gate
        self._pgate = points_gate
        self._timing = timing
        self.committer = GroupCommitter(
            pool,
            after_commit=self._settle_batch,
            max_batch=max_batch,
            workers=commit_workers,
            linger_s=commit_linger_s,
            metrics=metrics,
        )
        self._in_flight: dict[tuple[str, str], tuple[str, asyncio.Future[Redeemed]]] = {}

    # -- Redeem ---------------------------------------------------------------------------

    async def redeem(self, request: RedeemRequest) -> Redeemed:
        """Redeems, and counts the outcome (surge_redemptions_total)."""
        try:
            redeemed = await self._redeem_once(request)
        except BaseException as e:
            self._metrics.count_redemption(outcome_of(e))
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
        address = None
        if meta.item_kind is ItemKind.PHYSICAL:
            if request.shipping_address is None:
                raise InvalidArgument("shipping_address", "is required for a physical item")
            address = request.shipping_address.validated()
        fingerprint = _fingerprint(member_id, campaign_id, request.quantity, address)

        # One key, one outcome: a second call with the key while the first runs here waits
        # for the first's answer instead of racing it.
        slot = (member_id, key)
        running = self._in_flight.get(slot)
        if running is not None:
            if running[0] != fingerprint:
                raise IdempotencyKeyReused(key)
            first = await asyncio.shield(running[1])
            return Redeemed(first.redemption, replayed=True)
        future: asyncio.Future[Redeemed] = asyncio.get_running_loop().create_future()
        self._in_flight[slot] = (fingerprint, future)
        try:
            result = await self._redeem(
                meta, member_id, key, request.quantity, address, fingerprint
            )
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # mark retrieved: joiners re-raise it, nobody else must
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._in_flight[slot]

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
        with self.committer.approaching():
            entry = await self._admit(meta, member_id, key, quantity, address, fingerprint)
        if entry is None:  # the key is in PostgreSQL already
            return await self._saved(member_id, key, fingerprint)
        result = await self.committer.submit(entry)

        # Step 6 ran in the committer (_settle_batch); here the answer.
        if result.outcome in ("COMMITTED", "PENDING_PAYMENT"):
            status = RedemptionStatus(result.outcome)
            return Redeemed(_from_entry(entry, meta, status), replayed=False)
        if result.outcome == "EXISTING":
            if result.request_hash != fingerprint:
                raise IdempotencyKeyReused(key)
            return await self._saved(member_id, key, fingerprint)
        if result.outcome in _PG_REFUSALS:
            log.warning(
                "PostgreSQL refused what Redis admitted (%s): Redis was behind", result.outcome
            )
            raise _pg_refusal(meta, member_id, result)
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
        now = time.time()
        requested_at = datetime.fromtimestamp(now, UTC)
        deadline_ms = int((now + self._timing.hold_ttl_s) * 1000)

        # Step 2: units, on the campaign's slot.
        async def reserve() -> Any:
            return await self._cgate.reserve(
                meta.id,
                member_id,
                hold,
                quantity=quantity,
                fingerprint=fingerprint,
                now_ms=int(now * 1000),
                deadline_ms=deadline_ms,
            )

        units = await reserve()
        if units.code is Reserve.NOT_LOADED:
            await self._campaigns.load_into_gate(meta.id)
            units = await reserve()
        match units.code:
            case Reserve.KEY_REUSED:
                raise IdempotencyKeyReused(key)
            case Reserve.DONE:
                return None
            case Reserve.REFUSED_BEFORE:
                raise _refusal(meta, member_id, *units.values[:3])
            case Reserve.NOT_ACTIVE:
                raise _not_active(meta)
            case Reserve.LIMIT_EXCEEDED:
                raise LimitExceeded(meta.id, int(units.values[0]), int(units.values[1]))
            case Reserve.SOLD_OUT:
                raise SoldOut(meta.id, int(units.values[0]))
            case Reserve.HELD | Reserve.IN_FLIGHT:
                deadline_ms = int(units.values[0])
            case Reserve.NOT_LOADED:
                raise RequestInProgress(key)  # state vanished twice in a row: let them retry

        # Step 3: points, on the member's slot; step 4 if it says no.
        points = meta.points_price * quantity
        held = await self._pgate.hold(member_id, hold, points)
        if held.code is Hold.NOT_LOADED:
            if not await self._members.load_into_gate(member_id):
                await self._give_back(meta.id, member_id, hold, fingerprint, Outcome.RELEASE)
                raise NotFound("member", member_id)
            held = await self._pgate.hold(member_id, hold, points)
        if held.code is Hold.INSUFFICIENT:
            await self._give_back(
                meta.id,
                member_id,
                hold,
                fingerprint,
                Outcome.REFUSED,
                ("INSUFFICIENT_POINTS", held.available, points),
            )
            raise InsufficientPoints(member_id, held.available, points)
        if held.code is Hold.FROZEN:
            await self._give_back(
                meta.id, member_id, hold, fingerprint, Outcome.REFUSED, ("MEMBER_FROZEN", 0, 0)
            )
            raise MemberFrozen(member_id)
        if held.code is Hold.BELOW_THRESHOLD:
            await self._give_back(
                meta.id,
                member_id,
                hold,
                fingerprint,
                Outcome.REFUSED,
                ("BELOW_REDEMPTION_THRESHOLD", 0, 0),
            )
            raise BelowRedemptionThreshold(member_id)
        if held.code is Hold.NOT_LOADED:
            await self._give_back(meta.id, member_id, hold, fingerprint, Outcome.RELEASE)
            raise RequestInProgress(key)

        # Step 5 (by the caller): PostgreSQL, shared with every redemption waiting then.
        redemption_id = str(uuid.uuid4())
        payment_due = None
        if meta.needs_payment:
            payment_due = requested_at + timedelta(seconds=self._timing.payment_window_s)
        code = None
        if meta.item_kind is ItemKind.VIRTUAL and payment_due is None:
            code = new_redemption_code()
        deadline = datetime.fromtimestamp(deadline_ms / 1000, UTC)
        return CommitEntry(
            id=redemption_id,
            member_id=member_id,
            campaign_id=meta.id,
            quantity=quantity,
            points_total=points,
            cash_total_cents=meta.cash_price_cents * quantity,
            idempotency_key=key,
            request_hash=fingerprint,
            shipping_address=asdict(address) if address else None,
            redemption_code=code,
            requested_at=requested_at,
            fence=deadline - timedelta(seconds=self._timing.commit_fence_s),
            payment_due_at=payment_due,
        )

    async def _settle_batch(self, pairs: list[tuple[CommitEntry, CommitResult]]) -> None:
        """Step 6 for a whole batch: every hold settled and the PostgreSQL counters that came
        back applied (newer versions win, so order does not matter), one `resolve` per
        campaign (atomic: units move from held to taken at once) and one `settle` per hold.
        The calls share the auto-pipeline's round trips."""
        campaigns: dict[str, list[tuple[CommitEntry, CommitResult]]] = {}
        last_of_member: dict[str, int] = {}
        for i, pair in enumerate(pairs):
            campaigns.setdefault(pair[0].campaign_id, []).append(pair)
            last_of_member[pair[0].member_id] = i
        calls: list[Awaitable[Any]] = []
        for campaign_id, group in campaigns.items():
            mirrors = [r.campaign for _, r in group if r.campaign is not None]
            newest = max(mirrors, key=lambda m: m.version, default=None)
            calls.append(
                self._cgate.resolve_many(
                    campaign_id,
                    [_resolution(entry, result) for entry, result in group],
                    taken=newest.taken if newest else 0,
                    version=newest.version if newest else 0,
                )
            )
        for i, (entry, result) in enumerate(pairs):
            # A member's points mirror goes with its last hold of the batch: dropping an
            # earlier hold first can only make Redis briefly more generous than PostgreSQL,
            # which then refuses (the guard), never stingier (a refusal Redis would keep).
            mirror = result.member if last_of_member[entry.member_id] == i else None
            hold = hold_id(entry.member_id, entry.idempotency_key)
            calls.append(self._pgate.settle(entry.member_id, hold_id=hold, mirror=mirror))
        with self._metrics.redis_call("settle_batch"):
            replies = await asyncio.gather(*calls, return_exceptions=True)
        failed = [r for r in replies if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

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

    async def _saved(self, member_id: str, key: str, fingerprint: str) -> Redeemed:
        async with self._pool.connection() as conn:
            row = await _select_one(
                conn, "r.member_id = %s AND r.idempotency_key = %s", (member_id, key)
            )
        if row is None:
            raise RequestInProgress(key)  # Redis saw it done, PostgreSQL not yet: retry
        if row["request_hash"] != fingerprint:
            raise IdempotencyKeyReused(key)
        return Redeemed(redemption_from_row(row), replayed=True)

    @staticmethod
    def _fingerprint_for(
        member_id: str, campaign_id: str, quantity: int, address: Address | None
    ) -> str:
        return _fingerprint(member_id, campaign_id, quantity, address)

    # -- Reads ----------------------------------------------------------------------------

    async def get(self, redemption_id: str) -> Redemption:
        redemption_id = validation.uuid_id("redemption_id", redemption_id)
        async with self._pool.connection() as conn:
            row = await _select_one(conn, "r.id = %s", (redemption_id,))
        if row is None:
            raise NotFound("redemption", redemption_id)
        return redemption_from_row(row)

    async def list_for_member(
        self, *, member_id: str, page_size: int, page_token: str
    ) -> RedemptionPage:
        member_id = validation.uuid_id("member_id", member_id)
        size = paging.page_size(page_size)
        after = paging.decode(page_token)
        where, params = "r.member_id = %s", [member_id]
        if after is not None:
            where += " AND (r.created_at, r.id) < (%s, %s::uuid)"
            params += [after[0], after[1]]  # type: ignore[list-item]
        async with self._pool.connection() as conn:
            exists = await conn.execute("SELECT 1 FROM members WHERE id = %s", (member_id,))
            if await exists.fetchone() is None:
                raise NotFound("member", member_id)
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"{_SELECT} WHERE {where} ORDER BY r.created_at DESC, r.id DESC LIMIT %s",
                (*params, size + 1),
            )
            rows = await cur.fetchall()
        page = [redemption_from_row(row) for row in rows[:size]]
        token = paging.encode(page[-1].created_at, page[-1].id) if len(rows) > size else ""
        return RedemptionPage(page, token)

    # -- Cancel, confirm, expire ----------------------------------------------------------

    async def cancel(self, *, redemption_id: str, member_id: str, reason: str) -> Redemption:
        redemption_id = validation.uuid_id("redemption_id", redemption_id)
        member_id = validation.uuid_id("member_id", member_id)
        reason = validation.text(
            "reason", reason, max_length=validation.MAX_REASON_LENGTH, required=False
        )
        async with self._pool.connection() as conn, conn.transaction():
            row = await _lock(conn, redemption_id)
            if row is None or row["member_id"] != member_id:
                raise NotFound("redemption", redemption_id)
            status = RedemptionStatus(row["status"])
            if status is RedemptionStatus.EXPIRED:
                raise NotCancellable(redemption_id, status.value)
            if status is not RedemptionStatus.CANCELLED:
                await _give_back_in_pg(conn, row, RedemptionStatus.CANCELLED, reason or "cancelled")
            after = await _select_one(conn, "r.id = %s", (redemption_id,))
            mirrors = await _mirrors(conn, row)
        assert after is not None
        # Re-applied on a repeated cancel too: the mirrors are versioned, so this is a no-op
        # unless the first cancel died between PostgreSQL and Redis.
        await self._apply_mirrors(row, *mirrors)
        return redemption_from_row(after)

    async def confirm_payment(self, *, redemption_id: str, payment_reference: str) -> Redemption:
        redemption_id = validation.uuid_id("redemption_id", redemption_id)
        reference = validation.text(
            "payment_reference",
            payment_reference,
            max_length=validation.MAX_KEY_LENGTH,
            required=True,
        )
        window_closed = False
        async with self._pool.connection() as conn, conn.transaction():
            row = await _lock(conn, redemption_id)
            if row is None:
                raise NotFound("redemption", redemption_id)
            status = RedemptionStatus(row["status"])
            if status is RedemptionStatus.COMMITTED and row["payment_reference"] == reference:
                pass  # the same confirmation again
            elif status is not RedemptionStatus.PENDING_PAYMENT:
                raise PaymentNotPending(redemption_id, status.value)
            elif row["payment_due_at"] <= datetime.now(UTC):
                await _give_back_in_pg(conn, row, RedemptionStatus.EXPIRED, "payment window closed")
                window_closed = True
            else:
                await _confirm_in_pg(conn, row, reference)
            after = await _select_one(conn, "r.id = %s", (redemption_id,))
            mirrors = await _mirrors(conn, row)
        assert after is not None
        await self._apply_mirrors(row, *mirrors)
        if window_closed:
            raise PaymentWindowClosed(redemption_id)
        return redemption_from_row(after)

    async def expire_overdue(self, limit: int = 200) -> int:
        """Expires points + cash redemptions whose payment window has passed; units and
        points come back. Idempotent; safe to run from several processes at once."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id::text FROM redemptions WHERE status = 'PENDING_PAYMENT' "
                "AND payment_due_at <= now() ORDER BY payment_due_at LIMIT %s",
                (limit,),
            )
            overdue = [r[0] for r in await cur.fetchall()]
        expired = 0
        for redemption_id in overdue:
            async with self._pool.connection() as conn, conn.transaction():
                row = await _lock(conn, redemption_id)
                if row is None or row["status"] != RedemptionStatus.PENDING_PAYMENT.value:
                    continue
                await _give_back_in_pg(conn, row, RedemptionStatus.EXPIRED, "payment window closed")
                mirrors = await _mirrors(conn, row)
            await self._apply_mirrors(row, *mirrors)
            expired += 1
        return expired

    async def settle_lapsed_hold(self, campaign_id: str, hold: str, now_ms: int) -> str:
        """The sweeper's step for one hold past its deadline: if PostgreSQL has the
        redemption, settle it as done; otherwise release units and points. Returns what it did."""
        member_id, key = hold.split(":", 1)
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                "SELECT id::text, member_id::text, campaign_id::text, request_hash "
                "FROM redemptions WHERE member_id = %s AND idempotency_key = %s",
                (member_id, key),
            )
            row = await cur.fetchone()
            if row is not None:
                mirrors = await _mirrors(conn, row)
        if row is not None:
            await self._cgate.resolve(
                campaign_id,
                member_id,
                hold,
                fingerprint=row["request_hash"],
                outcome=Outcome.DONE,
                mirror=mirrors[0],
            )
            await self._pgate.settle(member_id, hold_id=hold, mirror=mirrors[1])
            return "committed"
        resolved = await self._cgate.resolve(
            campaign_id,
            member_id,
            hold,
            fingerprint="",
            outcome=Outcome.RELEASE,
            expired_before_ms=now_ms,
        )
        if resolved == 1:
            await self._pgate.settle(member_id, hold_id=hold)
            return "released"
        return "skipped"

    async def _apply_mirrors(
        self, row: dict[str, Any], campaign: CampaignMirror, member: MemberMirror
    ) -> None:
        hold = hold_id(row["member_id"], row["idempotency_key"])
        await self._cgate.resolve(
            row["campaign_id"],
            row["member_id"],
            hold,
            fingerprint=row["request_hash"],
            outcome=Outcome.DONE,
            mirror=campaign,
        )
        await self._pgate.settle(row["member_id"], mirror=member)


# -- PostgreSQL helpers: one fixed lock order everywhere (campaign, member, redemption) ----

_SELECT = (
    "SELECT r.id::text, r.member_id::text, r.campaign_id::text, c.item_id::text, r.quantity, "
    "r.points_total, r.cash_total_cents, r.status, r.redemption_code, r.shipping_address, "
    "r.idempotency_key, r.request_hash, r.created_at, r.updated_at, r.payment_due_at, "
    "r.payment_reference FROM redemptions r JOIN campaigns c ON c.id = r.campaign_id"
)


async def _select_one(
    conn: AsyncConnection[Any], where: str, params: tuple[Any, ...]
) -> dict[str, Any] | None:
    cur = await conn.cursor(row_factory=dict_row).execute(f"{_SELECT} WHERE {where}", params)
    return await cur.fetchone()


async def _lock(conn: AsyncConnection[Any], redemption_id: str) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT campaign_id::text, member_id::text FROM redemptions WHERE id = %s", (redemption_id,)
    )
    ids = await cur.fetchone()
    if ids is None:
        return None
    await cur.execute("SELECT 1 FROM campaigns WHERE id = %s FOR UPDATE", (ids["campaign_id"],))
    await cur.execute("SELECT 1 FROM members WHERE id = %s FOR UPDATE", (ids["member_id"],))
    await cur.execute(
        "SELECT r.id::text, r.member_id::text, r.campaign_id::text, r.quantity, r.points_total, "
        "r.status, r.idempotency_key, r.request_hash, r.payment_due_at, r.payment_reference, "
        "i.kind AS item_kind FROM redemptions r JOIN campaigns c ON c.id = r.campaign_id "
        "JOIN items i ON i.id = c.item_id WHERE r.id = %s FOR UPDATE OF r",
        (redemption_id,),
    )
    return await cur.fetchone()


async def _give_back_in_pg(
    conn: AsyncConnection[Any], row: dict[str, Any], status: RedemptionStatus, reason: str
) -> None:
    """Units and points of a committed or pending redemption go back; the ledger says why."""
    qty, points = row["quantity"], row["points_total"]
    committed = row["status"] == RedemptionStatus.COMMITTED.value
    units_column = "units_committed" if committed else "units_held"
    await conn.execute(
        f"UPDATE campaigns SET {units_column} = {units_column} - %s, version = version + 1 "
        "WHERE id = %s",
        (qty, row["campaign_id"]),
    )
    await conn.execute(
        "UPDATE campaign_members SET units_taken = units_taken - %s, version = version + 1 "
        "WHERE campaign_id = %s AND member_id = %s",
        (qty, row["campaign_id"], row["member_id"]),
    )
    reference = f"redemption:{row['id']}"
    if committed and points > 0:
        # The points go back to the lots they came from, with their original expiry (a lot
        # that expired meanwhile expires again at the next expiry run).
        await conn.execute("SELECT restore_lots(%s, %s, %s)", (row["member_id"], reference, points))
        await conn.execute(
            "SELECT post_entry(%s, 'refund', %s, 0, %s, %s)",
            (row["member_id"], points, reference, reason),
        )
    elif not committed:
        await conn.execute(
            "UPDATE members SET points_held = points_held - %s, version = version + 1 WHERE id = %s",
            (points, row["member_id"]),
        )
    # Points that come back (or stop being held) repay debt first.
    await conn.execute("SELECT repay_debt(%s, %s)", (row["member_id"], reference))
    await conn.execute(
        "UPDATE redemptions SET status = %s, cancel_reason = %s, updated_at = now() WHERE id = %s",
        (status.value, reason, row["id"]),
    )


async def _confirm_in_pg(conn: AsyncConnection[Any], row: dict[str, Any], reference: str) -> None:
    qty, points = row["quantity"], row["points_total"]
    await conn.execute(
        "UPDATE campaigns SET units_held = units_held - %s, units_committed = units_committed + %s, "
        "version = version + 1 WHERE id = %s",
        (qty, qty, row["campaign_id"]),
    )
    await conn.execute(
        "UPDATE members SET points_held = points_held - %s, version = version + 1 WHERE id = %s",
        (points, row["member_id"]),
    )
    if points > 0:
        # Held points were spared by expiry, so the lots still hold them: soonest expiry first.
        spent = f"redemption:{row['id']}"
        await conn.execute("SELECT spend_lots(%s, %s, %s)", (row["member_id"], points, spent))
        await conn.execute(
            "SELECT post_entry(%s, 'redeem', %s, 0, %s, "
            "'flash-sale redemption, payment confirmed')",
            (row["member_id"], -points, spent),
        )
    code = new_redemption_code() if row["item_kind"] == ItemKind.VIRTUAL.value else None
    await conn.execute(
        "UPDATE redemptions SET status = 'COMMITTED', payment_reference = %s, "
        "redemption_code = %s, updated_at = now() WHERE id = %s",
        (reference, code, row["id"]),
    )


async def _mirrors(
    conn: AsyncConnection[Any], row: dict[str, Any]
) -> tuple[CampaignMirror, MemberMirror]:
    cur = await conn.execute(
        "SELECT c.units_committed + c.units_held, c.version, "
        "coalesce(cm.units_taken, 0), coalesce(cm.version, 0), "
        "m.points_balance - m.points_held, m.version, m.frozen, m.redemption_eligible "
        "FROM campaigns c JOIN members m ON m.id = %s "
        "LEFT JOIN campaign_members cm ON cm.campaign_id = c.id AND cm.member_id = m.id "
        "WHERE c.id = %s",
        (row["member_id"], row["campaign_id"]),
    )
    r = await cur.fetchone()
    assert r is not None
    return CampaignMirror(r[0], r[1], r[2], r[3]), MemberMirror(r[4], r[5], r[6], r[7])


# -- Pure helpers ------------------------------------------------------------------------

_OUTCOMES: dict[type[BaseException], str] = {
    SoldOut: "sold_out",
    InsufficientPoints: "insufficient_points",
    LimitExceeded: "limit_exceeded",
    CampaignNotActive: "campaign_not_active",
    MemberFrozen: "member_frozen",
    BelowRedemptionThreshold: "below_threshold",
    IdempotencyKeyReused: "key_reused",
    InvalidArgument: "invalid",
    NotFound: "not_found",
    RequestInProgress: "retry",
    HoldExpired: "retry",
    Unavailable: "unavailable",
    redis.exceptions.ConnectionError: "unavailable",
    redis.exceptions.TimeoutError: "unavailable",
    psycopg.OperationalError: "unavailable",
    psycopg_pool.PoolTimeout: "unavailable",
}


def outcome_of(exc: BaseException) -> str:
    """The surge_redemptions_total outcome of a failed Redeem: the most specific class wins."""
    for cls in type(exc).__mro__:
        if cls in _OUTCOMES:
            return _OUTCOMES[cls]
    return "error"


def new_redemption_code() -> str:
    """80 random bits in Crockford-free base32: 16 characters, dashed in fours."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode()
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def _resolution(entry: CommitEntry, result: CommitResult) -> Resolution:
    """How a committed batch's entry settles its units hold."""
    hold = hold_id(entry.member_id, entry.idempotency_key)
    fingerprint, refusal = entry.request_hash, ("", 0, 0)
    if result.outcome in ("COMMITTED", "PENDING_PAYMENT", "EXISTING"):
        outcome = Outcome.DONE
        fingerprint = result.request_hash or fingerprint
    elif result.outcome in _PG_REFUSALS:
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


def _fingerprint(member_id: str, campaign_id: str, quantity: int, address: Address | None) -> str:
    """The request's identity for idempotency: stored with the redemption, so its bytes
    must never change."""
    if address is None:
        # The same bytes json.dumps gives (canonical UUIDs need no escaping), at a tenth of
        # the cost: this runs for every Redeem.
        body = f'["{member_id}", "{campaign_id}", {quantity}, null]'
    else:
        body = json.dumps([member_id, campaign_id, quantity, asdict(address)], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def _refusal(meta: CampaignMeta, member_id: str, reason: Any, n1: Any, n2: Any) -> DomainError:
    a, b = int(n1 or 0), int(n2 or 0)
    match reason:
        case "SOLD_OUT":
            return SoldOut(meta.id, a)
        case "LIMIT_EXCEEDED":
            return LimitExceeded(meta.id, a or meta.per_member_limit, b)
        case "INSUFFICIENT_POINTS":
            return InsufficientPoints(member_id, a, b)
        case "MEMBER_FROZEN":
            return MemberFrozen(member_id)
        case "BELOW_REDEMPTION_THRESHOLD":
            return BelowRedemptionThreshold(member_id)
    return _not_active(meta)


def _pg_refusal(meta: CampaignMeta, member_id: str, result: CommitResult) -> DomainError:
    if result.outcome == "SOLD_OUT" and result.campaign is not None:
        return SoldOut(meta.id, max(0, meta.units_allotted - result.campaign.taken))
    if result.outcome == "LIMIT_EXCEEDED" and result.campaign is not None:
        return LimitExceeded(meta.id, meta.per_member_limit, result.campaign.member_taken)
    if result.outcome == "INSUFFICIENT_POINTS" and result.member is not None:
        return InsufficientPoints(member_id, max(0, result.member.spendable), 0)
    return _refusal(meta, member_id, result.outcome, 0, 0)


def _not_active(meta: CampaignMeta) -> CampaignNotActive:
    return CampaignNotActive(meta.id, meta.starts_at.isoformat(), meta.ends_at.isoformat())


def _from_entry(entry: CommitEntry, meta: CampaignMeta, status: RedemptionStatus) -> Redemption:
    return Redemption(
        id=entry.id,
        member_id=entry.member_id,
        campaign_id=entry.campaign_id,
        item_id=meta.item_id,
        quantity=entry.quantity,
        points_total=entry.points_total,
        cash_total_cents=entry.cash_total_cents,
        status=status,
        redemption_code=entry.redemption_code,
        shipping_address=Address(**entry.shipping_address) if entry.shipping_address else None,
        idempotency_key=entry.idempotency_key,
        created_at=entry.requested_at,
        updated_at=entry.requested_at,
        payment_due_at=entry.payment_due_at,
        payment_reference=None,
    )


def redemption_from_row(row: dict[str, Any]) -> Redemption:
    address = row["shipping_address"]
    return Redemption(
        id=row["id"],
        member_id=row["member_id"],
        campaign_id=row["campaign_id"],
        item_id=row["item_id"],
        quantity=row["quantity"],
        points_total=row["points_total"],
        cash_total_cents=row["cash_total_cents"],
        status=RedemptionStatus(row["status"]),
        redemption_code=row["redemption_code"],
        shipping_address=Address(**address) if address else None,
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        payment_due_at=row["payment_due_at"],
        payment_reference=row["payment_reference"],
    )
