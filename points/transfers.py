"""Transfers: a member's beneficiaries (AddBeneficiary, RemoveBeneficiary,
ListBeneficiaries) and moving points to one of them (TransferPoints).
README.md, "Points ledger", Transfers."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from common import validation
from common.errors import (
    IdempotencyKeyReused,
    InsufficientPoints,
    InvalidArgument,
    MemberFrozen,
)
from points import store
from points.context import Changed, Context
from points.errors import NotABeneficiary, TooManyBeneficiaries
from points.members import Members
from points.model import MAX_POINTS, Beneficiary, Transferred
from points.store import Cursor


class Transfers:
    def __init__(self, ctx: Context, members: Members) -> None:
        self._pool, self._gate, self._program = ctx.pool, ctx.gate, ctx.program
        self._members = members  # the balances each transfer answers with

    async def add_beneficiary(self, *, member_id: str, beneficiary_id: str) -> list[Beneficiary]:
        member_id = validation.uuid_id("member_id", member_id)
        beneficiary_id = validation.uuid_id("beneficiary_id", beneficiary_id)
        if beneficiary_id == member_id:
            raise InvalidArgument("beneficiary_id", "must differ from member_id")
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await store.lock_members(cur, member_id)  # serialises the count check
            await store.require_member(cur, beneficiary_id)
            await cur.execute(
                "SELECT beneficiary_id::text AS id FROM beneficiaries WHERE member_id = %s",
                (member_id,),
            )
            current = {r["id"] for r in await cur.fetchall()}
            if beneficiary_id not in current:
                if len(current) >= self._program.max_beneficiaries:
                    raise TooManyBeneficiaries(member_id, self._program.max_beneficiaries)
                await cur.execute(
                    "INSERT INTO beneficiaries (member_id, beneficiary_id) VALUES (%s, %s)",
                    (member_id, beneficiary_id),
                )
        return await self.beneficiaries(member_id)

    async def remove_beneficiary(self, *, member_id: str, beneficiary_id: str) -> list[Beneficiary]:
        member_id = validation.uuid_id("member_id", member_id)
        beneficiary_id = validation.uuid_id("beneficiary_id", beneficiary_id)
        async with self._pool.connection() as conn:
            await conn.execute(
                "DELETE FROM beneficiaries WHERE member_id = %s AND beneficiary_id = %s",
                (member_id, beneficiary_id),
            )
        return await self.beneficiaries(member_id)

    async def beneficiaries(self, member_id: str) -> list[Beneficiary]:
        member_id = validation.uuid_id("member_id", member_id)
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await store.require_member(cur, member_id)
            await cur.execute(
                "SELECT b.beneficiary_id::text AS id, m.display_name, b.created_at "
                "FROM beneficiaries b JOIN members m ON m.id = b.beneficiary_id "
                "WHERE b.member_id = %s ORDER BY b.created_at, b.beneficiary_id",
                (member_id,),
            )
            rows = await cur.fetchall()
        return [Beneficiary(r["id"], r["display_name"], r["created_at"]) for r in rows]

    async def transfer(
        self, *, from_member_id: str, to_member_id: str, points: int, idempotency_key: str
    ) -> Transferred:
        """Moves points to one of the sender's beneficiaries, atomically. The sender's lots
        are taken soonest expiry first and the receiver gets lots with the same expiry
        dates: a transfer never extends a point's life. Transferred points are not earned:
        they count toward neither party's tier or threshold. They repay the receiver's debt
        first. Idempotent by (from_member_id, idempotency_key)."""
        sender = validation.uuid_id("from_member_id", from_member_id)
        receiver = validation.uuid_id("to_member_id", to_member_id)
        if sender == receiver:
            raise InvalidArgument("to_member_id", "must differ from from_member_id")
        validation.int_range("points", points, minimum=1, maximum=MAX_POINTS)
        key = validation.idempotency_key("idempotency_key", idempotency_key)
        changed = Changed()
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            rows = await store.lock_members(cur, sender, receiver)
            await cur.execute(
                "SELECT id::text, to_member_id::text AS to_id, points FROM transfers "
                "WHERE from_member_id = %s AND idempotency_key = %s",
                (sender, key),
            )
            previous = await cur.fetchone()
            if previous is not None:
                if (previous["to_id"], previous["points"]) != (receiver, points):
                    raise IdempotencyKeyReused(key)
                transfer_id, replayed = previous["id"], True
            else:
                transfer_id = await self._move(cur, rows[sender], receiver, points, key)
                replayed = False
            await changed.read(cur, sender, receiver)
        await changed.settle(self._gate)
        return Transferred(
            transfer_id,
            await self._members.balance(sender),
            await self._members.balance(receiver),
            replayed,
        )

    async def _move(
        self, cur: Cursor, sender: dict[str, Any], receiver: str, points: int, key: str
    ) -> str:
        sender_id = sender["id"]
        await cur.execute(
            "SELECT 1 FROM beneficiaries WHERE member_id = %s AND beneficiary_id = %s",
            (sender_id, receiver),
        )
        if await cur.fetchone() is None:
            raise NotABeneficiary(sender_id, receiver)
        if sender["frozen"]:
            raise MemberFrozen(sender_id)
        await store.expire_due(cur, sender_id)
        row = await store.state(cur, sender_id)
        available = row["points_balance"] - row["points_held"]
        if available < points:
            raise InsufficientPoints(sender_id, available, points)
        await cur.execute(
            "INSERT INTO transfers (from_member_id, to_member_id, points, idempotency_key) "
            "VALUES (%s, %s, %s, %s) RETURNING id::text",
            (sender_id, receiver, points, key),
        )
        inserted = await cur.fetchone()
        assert inserted is not None
        transfer_id = str(inserted["id"])
        reference = f"transfer:{transfer_id}"
        for spent in await store.spend(cur, sender_id, points, reference):
            await store.add_lot(
                cur,
                receiver,
                source="transfer",
                points=spent.points,
                expires_at=spent.expires_at,
                reference=reference,
            )
        await store.post(
            cur,
            sender_id,
            kind="transfer",
            amount=-points,
            reference=reference,
            reason="transfer to a beneficiary",
            key_scope="transfer",
            key=key,
            counterparty_id=receiver,
        )
        await store.post(
            cur,
            receiver,
            kind="transfer",
            amount=points,
            reference=reference,
            reason="transfer from a member",
            counterparty_id=sender_id,
        )
        await store.repay_debt(cur, receiver, reference)
        return transfer_id
