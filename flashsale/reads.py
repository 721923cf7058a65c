"""Reading redemptions: one by id (with its history), a member's newest first (paged)."""

from __future__ import annotations

import dataclasses

from psycopg_pool import AsyncConnectionPool

from common import paging, validation
from common.errors import NotFound
from flashsale import history, store
from flashsale.model import Redemption, RedemptionPage


class RedemptionReads:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def get(self, *, redemption_id: str, member_id: str) -> Redemption:
        """The member's redemption; another member's is NOT_FOUND, as if it did not exist."""
        redemption_id = validation.uuid_id("redemption_id", redemption_id)
        member_id = validation.uuid_id("member_id", member_id)
        async with self._pool.connection() as conn:
            row = await store.select_one(
                conn, "r.id = %s AND r.member_id = %s", (redemption_id, member_id)
            )
            if row is None:
                raise NotFound("redemption", redemption_id)
            steps = await history.entries(conn, row)
        return dataclasses.replace(store.redemption_from_row(row), history=steps)

    async def list_for_member(
        self, *, member_id: str, page_size: int, page_token: str
    ) -> RedemptionPage:
        member_id = validation.uuid_id("member_id", member_id)
        size = paging.page_size(page_size)
        after = paging.decode(page_token)
        async with self._pool.connection() as conn:
            if not await store.member_exists(conn, member_id):
                raise NotFound("member", member_id)
            # One more than a page: whether it exists says if there is a next page.
            rows = await store.page_for_member(conn, member_id, size=size + 1, after=after)
        page = [store.redemption_from_row(row) for row in rows[:size]]
        token = paging.encode(page[-1].created_at, page[-1].id) if len(rows) > size else ""
        return RedemptionPage(page, token)
