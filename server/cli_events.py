"""`surge events tail`: the event stream for an operator, read from PostgreSQL directly
(like `surge audit-log`) through the same ordered, never-skipping reader as WatchEvents.

    surge events tail [--after N] [--type T ...] [--no-follow]

One JSON object per line: sequence, type, subject_kind, subject_id, actor (null for the
service's own changes), occurred_at (RFC 3339, UTC) and payload (docs/events.md). Follows
new events until Ctrl-C; with --no-follow, stops at the newest event safe to hand out.
Exits 2 on a bad argument or a sequence older than retention (naming the oldest kept).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from events.feed import Event


def add_parser(sub: Any) -> None:
    """Adds `events` and its subcommand `tail` to the `surge` subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser("events", help="the event stream")
    commands = parser.add_subparsers(dest="events_command", required=True)
    tail = commands.add_parser("tail", help="print events as JSON lines, then follow new ones")
    tail.add_argument(
        "--after", type=int, default=0, help="the last sequence already seen (0: from the start)"
    )
    tail.add_argument(
        "--type",
        dest="types",
        action="append",
        default=[],
        help="only this type, e.g. redemption.committed (repeatable)",
    )
    tail.add_argument(
        "--no-follow", action="store_true", help="stop at the newest event instead of following"
    )


async def run(args: argparse.Namespace, database_url: str) -> int:
    from prometheus_client import CollectorRegistry

    from common.errors import DomainError
    from common.metrics import Metrics
    from events import feed
    from events.stream import EventStream

    stream = EventStream(
        database_url,
        metrics=Metrics(CollectorRegistry(), process_collectors=False),
        retention=timedelta(days=1),  # not used: this process never prunes
    )
    await stream.start()
    try:
        if args.no_follow:
            cursor = feed.Cursor(feed.after_sequence(args.after))
            wanted = feed.event_types(args.types)
            while True:
                async with stream.pool.connection() as conn:
                    page = await feed.read_page(conn, cursor, wanted, stream.page_size)
                for event in page.events:
                    print(as_json(event), flush=True)
                if page.gap_seen:
                    await asyncio.sleep(0.02)
                elif not page.full:
                    return 0
        async for event in stream.watch(args.after, args.types):
            print(as_json(event), flush=True)
    except DomainError as e:
        print(f"{e.reason}: {e.message}", file=sys.stderr)
        return 2
    finally:
        await stream.close()
    return 0


def as_json(event: Event) -> str:
    return json.dumps(
        {
            "sequence": event.sequence,
            "type": event.type,
            "subject_kind": event.subject_kind,
            "subject_id": event.subject_id,
            "actor": event.actor,
            "occurred_at": event.occurred_at.astimezone(UTC).isoformat(),
            "payload": event.payload,
        },
        separators=(",", ":"),
        sort_keys=True,
    )
