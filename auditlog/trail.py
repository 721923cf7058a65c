"""Reading the audit trail: ListAuditEvents and `surge audit-log`. Newest first, filtered by
subject, action, target and time, paged like every listing (common.paging)."""

from __future__ import annotations

from datetime import datetime

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from auditlog import store
from auditlog.model import ACTIONS, AuditPage, AuditQuery
from common import paging, validation
from common.errors import InvalidArgument

# A credential's subject can be longer than our own ids (an e-mail address, a URL).
MAX_SUBJECT_LENGTH = 256


class AuditTrail:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def events(self, query: AuditQuery, *, page_size: int, page_token: str) -> AuditPage:
        """One page of events matching `query`; InvalidArgument names a bad filter."""
        query = check(query)
        size = paging.page_size(page_size)
        after = _position(page_token)
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await store.select(cur, query, after=after, limit=size + 1)
        page = rows[:size]
        token = paging.encode(page[-1].occurred_at, page[-1].id) if len(rows) > size else ""
        return AuditPage(page, token)


def check(query: AuditQuery) -> AuditQuery:
    """The query with its text filters trimmed; InvalidArgument names the first bad one."""
    subject = validation.text(
        "subject", query.subject, max_length=MAX_SUBJECT_LENGTH, required=False
    )
    action = validation.text(
        "action", query.action, max_length=validation.MAX_KEY_LENGTH, required=False
    )
    if action and action not in ACTIONS:
        raise InvalidArgument("action", f"must be one of {', '.join(ACTIONS)}")
    target_id = validation.text(
        "target_id", query.target_id, max_length=validation.MAX_KEY_LENGTH, required=False
    )
    if query.start is not None and query.end is not None and query.end <= query.start:
        raise InvalidArgument("end_time", "must be after start_time")
    return AuditQuery(subject, action, target_id, query.start, query.end)


def _position(page_token: str) -> tuple[datetime, int] | None:
    after = paging.decode(page_token)
    if after is None:
        return None
    try:
        return after[0], int(after[1])
    except ValueError:
        raise InvalidArgument("page_token", "is not a token this service issued") from None
