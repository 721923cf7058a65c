"""Member cards' use cases: card types, batch issue for printing, opening a card for a
member, lost / unlock / replace, and the reads a till works from (CheckCard, ResolveCard).

- Numbers are sequential per type (cards/numbers.py: prefix, serial, Luhn digit). A batch
  takes the type's next serials under the type's row lock and writes every card in one
  COPY; the cards' PRIMARY KEY is the last word against an overlap. Idempotent by
  request_id: a retry answers the batch already made.
- A member may hold several active cards (a card and a key fob, a replacement kept with a
  found card unlocked...): each resolves to the member. Points belong to the member, never
  to a card, so a replacement moves nothing.
- Opening a card of a type with a default tier raises the member's manual tier floor to it
  (points/tier_floor.py): never lowers it.
- ResolveCard reads PostgreSQL, no cache: a card reported lost or replaced is refused by
  the next call. Redeem names members by id; the gateway resolves a card first.
- Lock order: card type, then member, then cards in number order.
"""

from __future__ import annotations

import re

import psycopg
from psycopg_pool import AsyncConnectionPool

import auditlog
from cards import numbers, store
from cards.errors import CardInvalidTransition, CardLost, CardNotOpened, CardReplaced
from cards.model import Card, CardBatch, CardCheck, CardState, CardType, NumbersPage
from common import actor, validation
from common.errors import (
    AlreadyExists,
    IdempotencyKeyReused,
    InvalidArgument,
    NotFound,
)
from points import tier_floor
from points.program import Program

MAX_BATCH = 100_000
MAX_EXPORT_PAGE = 10_000
_CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Cards:
    def __init__(self, pool: AsyncConnectionPool, program: Program) -> None:
        self._pool = pool
        self._program = program

    # -- Types and batches (operator) -----------------------------------------------------

    async def create_type(
        self, *, code: str, name: str, default_tier: str, prefix: str
    ) -> CardType:
        if not _CODE.fullmatch(code):
            raise InvalidArgument("code", "must be 1 to 64 letters, digits, '_' or '-'")
        name = validation.text("name", name, max_length=validation.MAX_NAME_LENGTH, required=True)
        if default_tier and self._program.tier(default_tier) is None:
            names = ", ".join(t.name for t in self._program.tiers)
            raise InvalidArgument("default_tier", f"must be one of {names} (or empty)")
        prefix = numbers.valid_prefix(prefix)
        async with self._pool.connection() as conn, conn.transaction():
            await store.lock_types(conn)
            if await store.card_type(conn, code) is not None:
                raise AlreadyExists("card type", "code", code)
            clash = await store.clashing_prefix(conn, prefix)
            if clash is not None:
                raise InvalidArgument(
                    "prefix", f"overlaps card type prefix {clash}: their numbers could clash"
                )
            created = await store.insert_type(
                conn,
                code=code,
                name=name,
                default_tier=default_tier,
                prefix=prefix,
                created_by=actor.current().subject,
            )
            await auditlog.record(
                conn,
                auditlog.CREATE_CARD_TYPE,
                target_kind=auditlog.CARD_TYPE,
                target_id=code,
                content={
                    "code": code,
                    "name": name,
                    "default_tier": default_tier,
                    "prefix": prefix,
                },
            )
        return created

    async def get_type(self, code: str) -> CardType:
        async with self._pool.connection() as conn:
            found = await store.card_type(conn, code)
        if found is None:
            raise NotFound("card type", code)
        return found

    async def issue(self, *, card_type: str, count: int, request_id: str) -> CardBatch:
        validation.int_range("count", count, minimum=1, maximum=MAX_BATCH)
        request_id = validation.idempotency_key("request_id", request_id)
        if not card_type:
            raise InvalidArgument("card_type", "is required")
        async with self._pool.connection() as conn, conn.transaction():
            kind = await store.card_type(conn, card_type, lock=True)
            if kind is None:
                raise NotFound("card type", card_type)
            # Under the type's lock, so a retry racing its first attempt sees it committed.
            done = await store.batch_by_request(conn, request_id)
            if done is not None:
                if (done.card_type, done.count) != (card_type, count):
                    raise IdempotencyKeyReused(request_id)
                return done
            room = numbers.capacity(kind.prefix) - kind.issued
            if count > room:
                raise InvalidArgument("count", f"card type {card_type} has {room} numbers left")
            try:
                made = await store.insert_batch(
                    conn,
                    kind=kind,
                    request_id=request_id,
                    count=count,
                    created_by=actor.current().subject,
                )
            except psycopg.errors.UniqueViolation as e:
                # Another type's request with this id (the type lock does not cover it).
                raise IdempotencyKeyReused(request_id) from e
            await auditlog.record(
                conn,
                auditlog.ISSUE_CARDS,
                target_kind=auditlog.CARD_TYPE,
                target_id=card_type,
                content={
                    "card_type": card_type,
                    "count": count,
                    "request_id": request_id,
                    "first_number": made.first_number,
                    "last_number": made.last_number,
                },
            )
        return made

    async def export(self, *, batch_id: str, page_size: int, page_token: str) -> NumbersPage:
        """A batch's numbers in order, for printing; the token is the last number sent."""
        batch_id = validation.uuid_id("batch_id", batch_id)
        size = validation.int_range(
            "page_size", page_size or 1000, minimum=1, maximum=MAX_EXPORT_PAGE
        )
        after = numbers.parse(page_token, field="page_token") if page_token else ""
        async with self._pool.connection() as conn:
            if await store.batch(conn, batch_id) is None:
                raise NotFound("card batch", batch_id)
            found = await store.batch_numbers(conn, batch_id, after, size + 1)
        more = len(found) > size
        found = found[:size]
        return NumbersPage(found, found[-1] if more else "")

    # -- A card's life ---------------------------------------------------------------------

    async def open(self, *, card_number: str, member_id: str) -> Card:
        card_number = numbers.parse(card_number)
        member_id = validation.uuid_id("member_id", member_id)
        async with self._pool.connection() as conn, conn.transaction():
            await tier_floor.lock_member(conn, member_id)
            card = await self._locked(conn, card_number)
            if card.state is not CardState.ISSUED:
                raise CardInvalidTransition(card_number, card.state, "open")
            opened = await store.set_state(
                conn,
                card_number,
                leaving=(CardState.ISSUED,),
                to=CardState.ACTIVE,
                sets="member_id = %s, opened_at = now()",
                params=(member_id,),
            )
            assert opened
            kind = await store.card_type(conn, card.card_type)
            assert kind is not None
            raised = await tier_floor.raise_manual_floor(
                conn,
                member_id=member_id,
                tier=kind.default_tier,
                program=self._program,
                reason=f"card {card_number} of type {kind.code}",
            )
            await auditlog.record(
                conn,
                auditlog.OPEN_CARD,
                target_kind=auditlog.CARD,
                target_id=card_number,
                content={
                    "card_number": card_number,
                    "member_id": member_id,
                    "tier_floor": kind.default_tier if raised else "",
                },
            )
            return await self._locked(conn, card_number)

    async def report_lost(self, *, card_number: str, member_id: str, reason: str) -> Card:
        """The owner's card stops working at once (NOT_FOUND for anyone else's card)."""
        card_number = numbers.parse(card_number)
        member_id = validation.uuid_id("member_id", member_id)
        reason = validation.text(
            "reason", reason, max_length=validation.MAX_REASON_LENGTH, required=False
        )
        async with self._pool.connection() as conn, conn.transaction():
            card = await self._locked(conn, card_number)
            if card.member_id != member_id:
                raise NotFound("card", card_number)
            if not await store.set_state(
                conn,
                card_number,
                leaving=(CardState.ACTIVE,),
                to=CardState.LOST,
                sets="lost_at = now(), lost_reason = %s",
                params=(reason,),
            ):
                raise CardInvalidTransition(card_number, card.state, "report lost")
            await self._audit(conn, auditlog.REPORT_CARD_LOST, card_number, member_id, reason)
            return await self._locked(conn, card_number)

    async def unlock(self, *, card_number: str, reason: str) -> Card:
        card_number = numbers.parse(card_number)
        reason = validation.text(
            "reason", reason, max_length=validation.MAX_REASON_LENGTH, required=False
        )
        async with self._pool.connection() as conn, conn.transaction():
            card = await self._locked(conn, card_number)
            if not await store.set_state(
                conn,
                card_number,
                leaving=(CardState.LOST,),
                to=CardState.ACTIVE,
                sets="lost_at = NULL, lost_reason = NULL",
            ):
                raise CardInvalidTransition(card_number, card.state, "unlock")
            await self._audit(conn, auditlog.UNLOCK_CARD, card_number, card.member_id, reason)
            return await self._locked(conn, card_number)

    async def replace(
        self, *, card_number: str, new_card_number: str, reason: str
    ) -> tuple[Card, Card]:
        """The old card REPLACED (never works again), the new one ACTIVE for the same member:
        the one named, an issued card of the same type. It must be named: the card handed
        to the member, never one picked by number (an issued card is printed, and may be in
        someone else's hands). Returns (old, new)."""
        card_number = numbers.parse(card_number)
        if not new_card_number:
            raise InvalidArgument(
                "new_card_number", "is required: the number of the card handed to the member"
            )
        new_card_number = numbers.parse(new_card_number, field="new_card_number")
        if new_card_number == card_number:
            raise InvalidArgument("new_card_number", "is the card being replaced")
        reason = validation.text(
            "reason", reason, max_length=validation.MAX_REASON_LENGTH, required=False
        )
        async with self._pool.connection() as conn, conn.transaction():
            locked = await store.lock_cards(conn, card_number, new_card_number)
            if new_card_number not in locked:
                raise NotFound("card", new_card_number)
            old = locked.get(card_number)
            if old is None:
                raise NotFound("card", card_number)
            if old.state not in (CardState.ACTIVE, CardState.LOST):
                raise CardInvalidTransition(card_number, old.state, "replace")
            if locked[new_card_number].card_type != old.card_type:
                # Same type: its default tier and multiplier are what the member had.
                raise InvalidArgument(
                    "new_card_number", f"must be a card of type {old.card_type}, as the old one"
                )
            if locked[new_card_number].state is not CardState.ISSUED:
                raise CardInvalidTransition(
                    new_card_number, locked[new_card_number].state, "open as a replacement"
                )
            opened = await store.set_state(
                conn,
                new_card_number,
                leaving=(CardState.ISSUED,),
                to=CardState.ACTIVE,
                sets="member_id = %s, opened_at = now()",
                params=(old.member_id,),
            )
            retired = await store.set_state(
                conn,
                card_number,
                leaving=(CardState.ACTIVE, CardState.LOST),
                to=CardState.REPLACED,
                sets="replaced_by = %s, replaced_at = now()",
                params=(new_card_number,),
            )
            assert opened and retired
            await auditlog.record(
                conn,
                auditlog.REPLACE_CARD,
                target_kind=auditlog.CARD,
                target_id=card_number,
                content={
                    "card_number": card_number,
                    "new_card_number": new_card_number,
                    "member_id": old.member_id,
                    "reason": reason,
                },
            )
            return await self._locked(conn, card_number), await self._locked(conn, new_card_number)

    # -- Reads for a till ----------------------------------------------------------------

    async def check(self, card_number: str) -> CardCheck:
        """Never refuses a number for its check digit: says whether it is valid."""
        card_number = card_number.strip()
        if not card_number:
            raise InvalidArgument("card_number", "is required")
        if len(card_number) != numbers.LENGTH or not numbers.luhn_valid(card_number):
            return CardCheck(card_number, False, None)
        async with self._pool.connection() as conn:
            return CardCheck(card_number, True, await store.card(conn, card_number))

    async def resolve(self, card_number: str) -> Card:
        """The member an ACTIVE card names, read from PostgreSQL (no cache)."""
        card_number = numbers.parse(card_number)
        async with self._pool.connection() as conn:
            card = await store.card(conn, card_number)
        if card is None:
            raise NotFound("card", card_number)
        if card.state is CardState.LOST:
            raise CardLost(card_number)
        if card.state is CardState.REPLACED:
            raise CardReplaced(card_number)
        if card.state is CardState.ISSUED:
            raise CardNotOpened(card_number)
        return card

    # -- Helpers ---------------------------------------------------------------------------

    async def _locked(self, conn: store.Conn, card_number: str) -> Card:
        card = await store.card(conn, card_number, lock=True)
        if card is None:
            raise NotFound("card", card_number)
        return card

    async def _audit(
        self, conn: store.Conn, action: str, card_number: str, member_id: str, reason: str
    ) -> None:
        await auditlog.record(
            conn,
            action,
            target_kind=auditlog.CARD,
            target_id=card_number,
            content={"card_number": card_number, "member_id": member_id, "reason": reason},
        )
