"""Operator use cases (create, read, list) and the lottery's load into Redis.

A lottery's terms and prizes never change once created, so each process keeps them
(`terms`) after the first read; only the awarded counts move, and those are read from
PostgreSQL whenever they are shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool

import auditlog
from common import actor, paging, validation
from common.errors import InvalidArgument, NotFound
from lottery import prizes as prize_campaigns
from lottery import store
from lottery.gate import LotteryGate, LotteryLoad, utc_day
from lottery.model import Lottery, PrizeKind, PrizeSpec

MAX_PRIZES = 32
MAX_WEIGHT = 1_000_000
MAX_STOCK = 10_000_000
MAX_DRAWS = 1_000_000
MAX_PRICE = 10**12  # as a campaign's (flashsale/campaigns.py)


class Lotteries:
    def __init__(self, pool: AsyncConnectionPool, gate: LotteryGate) -> None:
        self._pool = pool
        self._gate = gate
        self._terms: dict[str, Lottery] = {}
        self._goods: dict[str, dict[str, tuple[bool, bool]]] = {}

    async def create(
        self,
        *,
        name: str,
        cost_points: int,
        starts_at: datetime,
        ends_at: datetime,
        per_member_daily: int,
        per_member_total: int,
        prizes: Sequence[PrizeSpec],
    ) -> Lottery:
        name = validation.text("name", name, max_length=validation.MAX_NAME_LENGTH, required=True)
        # Lua counts in doubles: bounded as a campaign's price is.
        validation.int_range("cost_points", cost_points, minimum=1, maximum=MAX_PRICE)
        if ends_at <= starts_at:
            raise InvalidArgument("ends_at", "must be after starts_at")
        if ends_at <= datetime.now(UTC):
            # As CreateCampaign: its prizes' stock would be allotted to draws that never come.
            raise InvalidArgument("ends_at", "is in the past: the lottery could never open")
        validation.int_range("per_member_daily", per_member_daily, minimum=1, maximum=MAX_DRAWS)
        validation.int_range("per_member_total", per_member_total, minimum=1, maximum=MAX_DRAWS)
        checked = _checked_prizes(prizes)
        goods = [p.item_id for p in checked if p.kind is PrizeKind.GOOD]
        async with self._pool.connection() as conn, conn.transaction():
            missing = set(await store.missing_items(conn, goods))
            for i, p in enumerate(checked):
                if p.kind is PrizeKind.GOOD and p.item_id in missing:
                    raise InvalidArgument(f"prizes[{i}].item_id", "names no item")
            lottery_id = await store.insert_lottery(
                conn,
                name=name,
                cost_points=cost_points,
                starts_at=starts_at,
                ends_at=ends_at,
                per_member_daily=per_member_daily,
                per_member_total=per_member_total,
                created_by=actor.current().subject,
            )
            await store.insert_prizes(conn, lottery_id, checked)
            inserted = await store.lottery(conn, lottery_id)
            assert inserted is not None
            await prize_campaigns.create_campaigns(
                conn,
                lottery_name=name,
                starts_at=starts_at,
                ends_at=ends_at,
                per_member_total=per_member_total,
                prizes=inserted.prizes,
            )
            await auditlog.record(
                conn,
                auditlog.CREATE_LOTTERY,
                target_kind=auditlog.LOTTERY,
                target_id=lottery_id,
                content={
                    "name": name,
                    "cost_points": cost_points,
                    "starts_at": starts_at,
                    "ends_at": ends_at,
                    "per_member_daily": per_member_daily,
                    "per_member_total": per_member_total,
                    "prizes": [
                        {
                            "name": p.name,
                            "kind": str(p.kind),
                            "item_id": p.item_id,
                            "weight": p.weight,
                            "stock": p.stock,
                        }
                        for p in checked
                    ],
                },
            )
            created = await store.lottery(conn, lottery_id)
        assert created is not None
        return created

    async def get(self, lottery_id: str) -> Lottery:
        lottery_id = validation.uuid_id("lottery_id", lottery_id)
        async with self._pool.connection() as conn:
            found = await store.lottery(conn, lottery_id)
        if found is None:
            raise NotFound("lottery", lottery_id)
        return found

    async def list_page(self, *, page_size: int, page_token: str) -> tuple[list[Lottery], str]:
        size = paging.page_size(page_size)
        after = paging.decode(page_token)
        async with self._pool.connection() as conn:
            rows = await store.lotteries_page(conn, after, size + 1)
            created = {}
            if len(rows) > size:
                cur = await conn.execute(
                    "SELECT created_at FROM lotteries WHERE id = %s", (rows[size - 1].id,)
                )
                row = await cur.fetchone()
                assert row is not None
                created[rows[size - 1].id] = row[0]
        if len(rows) <= size:
            return rows, ""
        last = rows[size - 1]
        return rows[:size], paging.encode(created[last.id], last.id)

    async def terms(self, lottery_id: str) -> Lottery:
        """The lottery as created (its awarded counts may be old: see the module doc)."""
        found = self._terms.get(lottery_id)
        if found is None:
            found = self._terms[lottery_id] = await self.get(lottery_id)
        return found

    async def goods(self, lottery_id: str) -> dict[str, tuple[bool, bool]]:
        """Per GOOD prize id: (its item is physical, its codes come from a pool). Fixed at
        creation, so kept."""
        found = self._goods.get(lottery_id)
        if found is None:
            async with self._pool.connection() as conn:
                found = self._goods[lottery_id] = await prize_campaigns.goods(conn, lottery_id)
        return found

    async def load_all_into_gate(self) -> int:
        """`surge rebuild-cache`: every lottery open or ended within the hour into Redis
        (set-if-absent: a live state is left alone); how many were loaded."""
        async with self._pool.connection() as conn:
            ids = await store.lotteries_to_watch(conn)
        return sum([int(await self.load_into_gate(i)) for i in ids])

    async def load_into_gate(self, lottery_id: str) -> bool:
        """Loads the lottery's state into Redis from PostgreSQL (set-if-absent); whether
        it was absent."""
        now = datetime.now(UTC)
        day, _ = utc_day(now)
        async with self._pool.connection() as conn:
            found = await store.lottery(conn, lottery_id)
            if found is None:
                raise NotFound("lottery", lottery_id)
            members = await store.member_counts(conn, lottery_id, day)
        prizes = [(p.weight, -1 if p.remaining is None else p.remaining) for p in found.prizes]
        return await self._gate.load(
            lottery_id,
            LotteryLoad(
                starts_ms=int(found.starts_at.timestamp() * 1000),
                ends_ms=int(found.ends_at.timestamp() * 1000),
                daily=found.per_member_daily,
                total=found.per_member_total,
                prizes=prizes,
                members=members,
            ),
            now=now,
        )


def _checked_prizes(prizes: Sequence[PrizeSpec]) -> list[PrizeSpec]:
    if not prizes:
        raise InvalidArgument("prizes", "needs one prize of kind NONE (the consolation)")
    if len(prizes) > MAX_PRIZES:
        raise InvalidArgument("prizes", f"must be at most {MAX_PRIZES}")
    checked = []
    consolation = None
    for i, p in enumerate(prizes):
        field = f"prizes[{i}]"
        name = validation.text(
            field + ".name", p.name, max_length=validation.MAX_NAME_LENGTH, required=True
        )
        if p.kind is None:
            raise InvalidArgument(field + ".kind", "must be GOOD or NONE")
        # Each weight > 0, so no sum of them is 0: the draw always has a prize to pick.
        validation.int_range(field + ".weight", p.weight, minimum=1, maximum=MAX_WEIGHT)
        item_id = ""
        if p.kind is PrizeKind.NONE:
            if consolation is not None:
                raise InvalidArgument(
                    field + ".kind", f"only one prize may be NONE; prizes[{consolation}] is"
                )
            consolation = i
            if p.stock != 0 or p.item_id:
                raise InvalidArgument(
                    field + ".stock" if p.stock != 0 else field + ".item_id",
                    "must be left out: the consolation is never out of stock and no item",
                )
        else:
            item_id = validation.uuid_id(field + ".item_id", p.item_id)
            validation.int_range(field + ".stock", p.stock, minimum=0, maximum=MAX_STOCK)
        checked.append(PrizeSpec(name, p.kind, item_id, p.weight, p.stock))
    if consolation is None:
        raise InvalidArgument("prizes", "needs one prize of kind NONE (the consolation)")
    return checked
