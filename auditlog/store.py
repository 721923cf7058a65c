"""PostgreSQL side of the audit trail: writing one event inside the caller's transaction,
and reading a page of events. No rules beyond the ones that keep a row honest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from auditlog.model import ACTIONS, TARGET_KINDS, AuditEvent, AuditQuery
from auditlog.redaction import redact
from common import actor

Cursor = AsyncCursor[dict[str, Any]]

_COLUMNS = "id, occurred_at, subject, request_id, action, target_kind, target_id, content"


async def record(
    conn: AsyncConnection[Any],
    action: str,
    *,
    target_kind: str,
    target_id: str,
    content: Mapping[str, Any],
) -> None:
    """Writes the event of an operator change in the transaction that makes the change, so
    both commit or neither does: the caller is inside `conn.transaction()`. Who and which
    request come from common.actor.current() (set by the gRPC edge); the content is
    redacted (auditlog.redaction) before it is stored. Datetimes are stored as ISO 8601."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if target_kind not in TARGET_KINDS:
        raise ValueError(f"unknown audit target kind {target_kind!r}")
    if conn.info.transaction_status != TransactionStatus.INTRANS:
        # Outside a transaction (the pool is autocommit) the event would commit on its own.
        raise RuntimeError("an audit event is written inside the change's transaction")
    who = actor.current()
    if not who.subject:
        raise RuntimeError("an audit event needs the actor's subject")
    await conn.execute(
        "INSERT INTO audit_events (subject, request_id, action, target_kind, target_id, "
        "content) VALUES (%s, %s, %s, %s, %s, %s)",
        (
            who.subject,
            who.request_id,
            action,
            target_kind,
            target_id,
            Jsonb(redact(content), dumps=_dumps),
        ),
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_iso, separators=(",", ":"))


def _iso(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


async def select(
    cur: Cursor, query: AuditQuery, *, after: tuple[datetime, int] | None, limit: int
) -> list[AuditEvent]:
    """Events matching the query, newest first (occurred_at, then id), after the keyset
    position `after` of the previous page."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("subject", query.subject),
        ("action", query.action),
        ("target_id", query.target_id),
    ):
        if value:
            where.append(f"{column} = %s")
            params.append(value)
    if query.start is not None:
        where.append("occurred_at >= %s")
        params.append(query.start)
    if query.end is not None:
        where.append("occurred_at < %s")
        params.append(query.end)
    if after is not None:
        where.append("(occurred_at, id) < (%s, %s)")
        params.extend(after)
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    await cur.execute(
        f"SELECT {_COLUMNS} FROM audit_events {condition}"
        "ORDER BY occurred_at DESC, id DESC LIMIT %s",
        (*params, limit),
    )
    return [_event(row) for row in await cur.fetchall()]


def _event(row: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        id=str(row["id"]),
        occurred_at=row["occurred_at"],
        subject=row["subject"],
        request_id=row["request_id"],
        action=row["action"],
        target_kind=row["target_kind"],
        target_id=row["target_id"],
        content=dict(row["content"]),
    )
