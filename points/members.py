"""Members: create, read, freeze and unfreeze; the redemption threshold applied to every
member; the balance a member sees; and the member's mirror in the Redis gate, which the
redemption path loads on demand (flashsale calls load_into_gate).

The other use cases (earning.py, corrections.py, transfers.py) answer with the balance read
here."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

import auditlog
from common import create_requests, validation
from common.errors import AlreadyExists, NotFound
from points import context, store, tiers
from points.context import Context
from points.gate import MemberMirror
from points.model import Balance, Member
from points.program import utc_now, window_start

_MEMBER_COLUMNS = "id::text, display_name, external_ref, frozen, frozen_reason, created_at"


class Members:
    def __init__(self, ctx: Context) -> None:
        self._pool, self._gate, self._program = ctx.pool, ctx.gate, ctx.program

    # -- Members ---------------------------------------------------------------------------

    async def create(
        self, *, display_name: str, external_ref: str | None, request_id: str = ""
    ) -> Member:
        """A new member. external_ref taken: AlreadyExists naming the member who has it.
        request_id (AIP-155, common/create_requests.py): the same request again answers the
        member it made; another request under it is RequestIdReused."""
        display_name = validation.text(
            "display_name", display_name, max_length=validation.MAX_NAME_LENGTH, required=True
        )
        if external_ref is not None:
            external_ref = _external_ref(external_ref, required=False) or None
        request = create_requests.of(
            create_requests.MEMBER,
            request_id,
            display_name=display_name,
            external_ref=external_ref,
        )
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await create_requests.claim(conn, request)
                cur = await conn.cursor(row_factory=dict_row).execute(
                    "INSERT INTO members (display_name, external_ref, redemption_eligible) "
                    "VALUES (%s, %s, %s) ON CONFLICT (external_ref) DO NOTHING "
                    f"RETURNING {_MEMBER_COLUMNS}, version, redemption_eligible",
                    (display_name, external_ref, self._program.redemption_threshold <= 0),
                )
                row = await cur.fetchone()
                if row is None:  # only a non-NULL external_ref conflicts
                    assert external_ref is not None
                    # The statement after the conflict sees the committed holder.
                    holder = await _find(conn, external_ref)
                    raise AlreadyExists(
                        "member", "external_ref", external_ref, holder.id if holder else ""
                    )
                await create_requests.record(conn, request, row["id"])
        except create_requests.Replayed as replay:
            return await self.get(replay.resource_id)
        mirror = MemberMirror(0, row["version"], False, bool(row["redemption_eligible"]))
        await self._gate.mirror_committed(row["id"], mirror)
        return _member(row)

    async def lookup(self, external_ref: str) -> Member:
        """The member the mall knows by `external_ref`; NotFound naming it if none."""
        external_ref = _external_ref(external_ref, required=True)
        async with self._pool.connection() as conn:
            found = await _find(conn, external_ref)
        if found is None:
            raise NotFound("member", external_ref, by="external_ref")
        return found

    async def get(self, member_id: str) -> Member:
        member_id = validation.uuid_id("member_id", member_id)
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"SELECT {_MEMBER_COLUMNS} FROM members WHERE id = %s", (member_id,)
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound("member", member_id)
        return _member(row)

    async def freeze(self, *, member_id: str, reason: str, operator_id: str) -> Member:
        return await self._set_frozen(member_id, True, reason, operator_id)

    async def unfreeze(self, *, member_id: str, reason: str, operator_id: str) -> Member:
        return await self._set_frozen(member_id, False, reason, operator_id)

    async def _set_frozen(
        self, member_id: str, frozen: bool, reason: str, operator_id: str
    ) -> Member:
        """From the moment this returns, Redis refuses the member's holds (MEMBER_FROZEN) and
        PostgreSQL refuses any commit that was in flight (it re-checks under the row lock).
        Freezing a frozen member (or unfreezing an unfrozen one) changes nothing and records
        nothing, in member_actions or the audit trail."""
        member_id = validation.uuid_id("member_id", member_id)
        reason = context.reason(reason)
        operator = context.operator_id(operator_id, required=False)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            row = (await store.lock_members(cur, member_id))[member_id]
            if row["frozen"] != frozen:
                await cur.execute(
                    "UPDATE members SET frozen = %s, frozen_reason = %s, version = version + 1 "
                    "WHERE id = %s",
                    (frozen, reason if frozen else None, member_id),
                )
                await cur.execute(
                    "INSERT INTO member_actions (member_id, action, reason, operator_id) "
                    "VALUES (%s, %s, %s, %s)",
                    (member_id, "freeze" if frozen else "unfreeze", reason, operator),
                )
                await auditlog.record(
                    conn,
                    auditlog.FREEZE_MEMBER if frozen else auditlog.UNFREEZE_MEMBER,
                    target_kind=auditlog.MEMBER,
                    target_id=member_id,
                    content={"member_id": member_id, "reason": reason, "operator_id": operator},
                )
            mirror = await store.mirror(cur, member_id)
            await cur.execute(f"SELECT {_MEMBER_COLUMNS} FROM members WHERE id = %s", (member_id,))
            after = await cur.fetchone()
        await self._gate.mirror_committed(member_id, mirror)
        assert after is not None
        return _member(after)

    # -- Eligibility (a periodic job) ------------------------------------------------------

    async def reconcile_eligibility(self) -> int:
        """Brings every member's redemption_eligible in line with the program's threshold
        (after the threshold changed) and mirrors the members that changed."""
        threshold = self._program.redemption_threshold
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT id FROM members WHERE redemption_eligible <> (lifetime_earned >= %s) "
                "ORDER BY id FOR UPDATE",
                (threshold,),
            )
            await cur.execute(
                "UPDATE members SET redemption_eligible = (lifetime_earned >= %s), "
                "version = version + 1 WHERE redemption_eligible <> (lifetime_earned >= %s) "
                f"RETURNING {store.MEMBER_STATE}",
                (threshold, threshold),
            )
            rows = await cur.fetchall()
        for row in rows:
            await self._gate.mirror_committed(row["id"], store.mirror_of(row))
        return len(rows)

    # -- Reads -----------------------------------------------------------------------------

    async def balance(self, member_id: str, *, now: datetime | None = None) -> Balance:
        member_id = validation.uuid_id("member_id", member_id)
        now = now or utc_now()
        # Through the end of the Nth day (UTC): the same horizon all day long.
        soon = (now + timedelta(days=self._program.expiring_soon_days)).replace(
            hour=0, minute=0, second=0, microsecond=0
        ) + timedelta(days=1)
        since = window_start(now, self._program.tier_window_months)
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"SELECT {store.MEMBER_STATE}, "
                "(SELECT coalesce(sum(l.remaining), 0) FROM point_lots l "
                " WHERE l.member_id = m.id AND l.remaining > 0 AND l.expires_at < %s) AS soon, "
                "(SELECT coalesce(sum(l.qualifying), 0) FROM point_lots l "
                " WHERE l.member_id = m.id AND l.qualifying > 0 AND l.earned_at > %s "
                " AND l.earned_at <= %s) AS qualifying, "
                # Pending purchase points (pending.py): not in points_balance until activated.
                "(SELECT coalesce(sum(p.points - p.reversed_points), 0) FROM purchases p "
                " WHERE p.member_id = m.id AND p.pending_until IS NOT NULL "
                " AND p.activated_at IS NULL) AS pending, "
                "(SELECT min(p.pending_until) FROM purchases p WHERE p.member_id = m.id "
                " AND p.pending_until IS NOT NULL AND p.activated_at IS NULL "
                " AND p.points > p.reversed_points) AS pending_until "
                "FROM members m WHERE m.id = %s",
                (soon, since, now, member_id),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound("member", member_id)
        in_flight = await self._gate.held(member_id)
        held = tiers.current(self._program, tiers.state_of(row), now)
        return Balance(
            member_id,
            balance=row["points_balance"],
            held=row["points_held"] + in_flight,
            lifetime_earned=row["lifetime_earned"],
            qualifying=int(row["qualifying"]),
            expiring_soon=int(row["soon"]),
            expiring_before=soon,
            tier=held.tier.name,
            tier_valid_until=held.valid_until,
            debt=row["points_debt"],
            frozen=row["frozen"],
            eligible=row["redemption_eligible"],
            pending=int(row["pending"]),
            pending_until=row["pending_until"],
        )

    async def current_tier(self, member_id: str, *, now: datetime | None = None) -> str:
        """The tier the member holds now (a tier-priced campaign's price depends on it)."""
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"SELECT {store.MEMBER_STATE} FROM members m WHERE m.id = %s", (member_id,)
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound("member", member_id)
        return tiers.current(self._program, tiers.state_of(row), now or utc_now()).tier.name

    # -- The Redis gate ----------------------------------------------------------------------

    async def mirror(self, member_id: str) -> MemberMirror | None:
        """The member's PostgreSQL state as Redis mirrors it; None if there is no such member."""
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"SELECT {store.MEMBER_STATE} FROM members WHERE id = %s", (member_id,)
            )
            row = await cur.fetchone()
        return None if row is None else store.mirror_of(row)

    async def load_into_gate(self, member_id: str) -> bool:
        """Loads the member into Redis if absent (or refreshes an older mirror)."""
        mirror = await self.mirror(member_id)
        if mirror is None:
            return False
        self._gate.count_load()
        await self._gate.settle(member_id, mirror=mirror)
        return True

    async def repair_mirrors(self) -> int:
        """Reloads the members whose mirror missed a commit (PointsGate.stale); returns how
        many."""
        return await self._gate.stale.reload(self.load_into_gate)


def _external_ref(value: str, *, required: bool) -> str:
    return validation.text(
        "external_ref", value, max_length=validation.MAX_KEY_LENGTH, required=required
    )


async def _find(conn: psycopg.AsyncConnection[Any], external_ref: str) -> Member | None:
    cur = await conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_MEMBER_COLUMNS} FROM members WHERE external_ref = %s", (external_ref,)
    )
    row = await cur.fetchone()
    return None if row is None else _member(row)


def _member(row: dict[str, Any]) -> Member:
    return Member(
        id=str(row["id"]),
        display_name=str(row["display_name"]),
        external_ref=row["external_ref"] if isinstance(row["external_ref"], str) else None,
        frozen=bool(row["frozen"]),
        created_at=row["created_at"],
        frozen_reason=row.get("frozen_reason"),
    )
