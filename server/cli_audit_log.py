"""`surge audit-log`: the audit trail of operator changes, newest first, read from
PostgreSQL directly (like `surge audit`), through the same filters as ListAuditEvents.

    surge audit-log [--subject S] [--action A] [--target ID] [--since ISO] [--limit N] [--json]

One line per event (time UTC, subject, request id, action, target, content as JSON), or with
--json one JSON object per line: ListAuditEvents' AuditEvent in proto3 JSON, with the
protos' field names (`create_time`, `target_kind`, ...). Exits 2 on a bad filter.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auditlog import AuditEvent

DEFAULT_LIMIT = 50


def add_parser(sub: Any) -> None:
    """Adds the command to the `surge` subcommands (argparse's _SubParsersAction)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "audit-log", help="the audit trail of operator changes, newest first"
    )
    parser.add_argument("--subject", default="", help="only this credential subject")
    parser.add_argument("--action", default="", help="only this action, e.g. catalog.adjust_stock")
    parser.add_argument(
        "--target", default="", help="only changes to this item, campaign or member id"
    )
    parser.add_argument(
        "--since", help="only events at or after this ISO 8601 time (UTC unless it has an offset)"
    )
    parser.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help=f"at most N events ({DEFAULT_LIMIT})"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one AuditEvent per line, as proto3 JSON with the protos' field names",
    )


async def run(args: argparse.Namespace, database_url: str) -> int:
    from psycopg_pool import AsyncConnectionPool

    from auditlog import AuditQuery, AuditTrail
    from common.errors import InvalidArgument

    try:
        since = _since(args.since)
    except ValueError as e:
        print(f"bad --since: {e}", file=sys.stderr)
        return 2
    if args.limit < 1:
        print("bad --limit: must be at least 1", file=sys.stderr)
        return 2
    query = AuditQuery(subject=args.subject, action=args.action, target_id=args.target, start=since)
    pool = AsyncConnectionPool(
        database_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    events: list[AuditEvent] = []
    try:
        trail, token = AuditTrail(pool), ""
        while len(events) < args.limit:
            page = await trail.events(
                query, page_size=min(100, args.limit - len(events)), page_token=token
            )
            events += page.events
            token = page.next_page_token
            if not token:
                break
    except InvalidArgument as e:
        print(f"invalid: {e.message}", file=sys.stderr)
        return 2
    finally:
        await pool.close()
    for event in events:
        print(as_json(event) if args.json else line(event))
    if not args.json:
        print(f"{len(events)} event(s)" + (", more with a higher --limit" if token else ""))
    return 0


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def as_json(event: AuditEvent) -> str:
    """One line: ListAuditEvents' AuditEvent, field for field (server.convert.to_json)."""
    from server import convert, convert_audit

    return convert.to_json(convert_audit.audit_event(event))


def line(event: AuditEvent) -> str:
    when = event.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    content = json.dumps(event.content, separators=(",", ":"))
    return (
        f"{when}  {event.subject}  {event.request_id}  {event.action}  "
        f"{event.target_kind}:{event.target_id}  {content}"
    )
