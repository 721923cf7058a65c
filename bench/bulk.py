"""Large data sets for `make bench-scale`, made in bulk with COPY, row for row what the domain
writes.

One member (created and credited through points/) and one campaign (an item through
inventory/, its campaign through flashsale/) are made through the domain objects of
server.app.App, as bench.workloads.seed makes its data set: they are the templates. Every row
those calls wrote (members, ledger entries, lots, events; items, stock levels and movements,
campaigns, campaign stock, audit events) is read back as COPY text, and cloned N times with
fresh ids: every UUID in a template row (but the shared location's) is replaced by a new one
per clone, so references between the rows (a lot's member, an event's entry id, an item's
sku) stay consistent. Columns the database fills per row (sequences, the writing transaction
id) are left to their defaults. A guard counts the rows of every table around the template
calls: if the domain starts writing a table the templates do not read, making fails loudly
instead of producing rows the audit would not recognise.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from bench.workloads import (
    RICH_POINTS,
    SUCCESS_LIMIT,
    SUCCESS_PRICE,
    SUCCESS_UNITS,
    make_campaign,
)
from flashsale.model import RedeemRequest
from server.app import App, Stores
from server.config import Settings

# What a template is made of: table -> the condition naming its rows (%(id)s: the template's
# member / campaign / item id), in the order COPY fills them (foreign keys first).
MEMBER_TABLES = {
    "members": "id = %(member)s",
    "ledger_entries": "member_id = %(member)s",
    "point_lots": "member_id = %(member)s",
    "events": "subject_id = %(member)s::text",
}
CAMPAIGN_TABLES = {
    "items": "id = %(item)s",
    "stock_levels": "item_id = %(item)s",
    "stock_movements": "item_id = %(item)s",
    "campaigns": "id = %(campaign)s",
    "campaign_stock": "campaign_id = %(campaign)s",
    "audit_events": "target_id IN (%(item)s::text, %(campaign)s::text)",
}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Template:
    """Rows of one member or one campaign, as COPY text lines split around their UUIDs."""

    tables: dict[str, tuple[str, list[list[str | int]]]]  # table -> (columns, lines)
    slots: int  # distinct UUIDs replaced per clone
    anchor: int  # the slot of the member's / campaign's own id


@dataclass(frozen=True)
class Templates:
    member: Template
    campaign: Template
    member_id: str
    campaign_id: str
    sold_out_campaign: str  # made through the domain; its one unit sold through the real flow


def _copy_text(value: str | None) -> str:
    if value is None:
        return r"\N"
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _row_counts(conn: psycopg.Connection) -> dict[str, int]:
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    ]
    return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}  # type: ignore[index]


def _copied_columns(conn: psycopg.Connection, table: str) -> list[str]:
    """Every column but those the database fills itself per row."""
    rows = conn.execute(
        "SELECT column_name, coalesce(column_default, ''), is_identity, is_generated "
        "FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
        "ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [
        name
        for name, default, identity, generated in rows
        if identity == "NO"
        and generated == "NEVER"
        and not default.startswith("nextval(")
        and "pg_current_xact_id" not in default
    ]


def _template(
    conn: psycopg.Connection, tables: dict[str, str], ids: dict[str, str], anchor: str
) -> Template:
    fixed = {str(r[0]) for r in conn.execute("SELECT id FROM locations").fetchall()}
    slot_of: dict[str, int] = {}
    out: dict[str, tuple[str, list[list[str | int]]]] = {}
    for table, where in tables.items():
        columns = _copied_columns(conn, table)
        select = ", ".join(f"{c}::text" for c in columns)
        lines = []
        for row in conn.execute(f"SELECT {select} FROM {table} WHERE {where}", ids).fetchall():
            text = "\t".join(_copy_text(v) for v in row) + "\n"
            parts: list[str | int] = []
            at = 0
            for found in _UUID.finditer(text):
                if found.group() in fixed:
                    continue
                parts.append(text[at : found.start()])
                parts.append(slot_of.setdefault(found.group(), len(slot_of)))
                at = found.end()
            parts.append(text[at:])
            lines.append(parts)
        out[table] = (", ".join(columns), lines)
    return Template(out, len(slot_of), slot_of[anchor])


async def make_templates(stores: Stores) -> Templates:
    """The template member and campaign, and the sold-out campaign, through the domain."""
    settings = Settings(grpc_address="127.0.0.1:0", pg_pool_min=1, pg_pool_max=4)
    app = App(settings, stores)
    await app.pool.open(wait=True, timeout=30)
    await app.campaign_gate.load_scripts()
    await app.points_gate.load_scripts()
    app.committer.start()
    try:
        starts = datetime.now(UTC) - timedelta(minutes=1)

        async def campaign(units: int, limit: int) -> tuple[str, str]:
            # The sku holds a UUID, so each clone's is new and unique like its ids.
            sku, ends = f"scale-{uuid.uuid4()}", starts + timedelta(days=1)
            return await make_campaign(app, sku, units, SUCCESS_PRICE, limit, starts, ends)

        with psycopg.connect(stores.database_url) as conn:
            before = _row_counts(conn)
        member = await app.points.members.create(display_name="Bench member", external_ref=None)
        await app.points.earning.earn(
            member_id=member.id,
            points=RICH_POINTS,
            reason="bench seed",
            idempotency_key="seed-" + member.id,
        )
        item_id, campaign_id = await campaign(SUCCESS_UNITS, SUCCESS_LIMIT)
        with psycopg.connect(stores.database_url) as conn:
            grew = {t: n - before.get(t, 0) for t, n in _row_counts(conn).items()}
            ids = {"member": member.id, "item": item_id, "campaign": campaign_id}
            member_t = _template(conn, MEMBER_TABLES, ids, member.id)
            campaign_t = _template(conn, CAMPAIGN_TABLES, ids, campaign_id)
        read = {
            t: len(lines) for tpl in (member_t, campaign_t) for t, (_, lines) in tpl.tables.items()
        }
        unread = {t: n for t, n in grew.items() if n != read.get(t, 0)}
        if unread:  # the domain wrote rows a clone would lack
            raise RuntimeError(f"templates miss rows the domain wrote: {unread} (read {read})")
        # A high limit: the one buyer may come back and must hear SOLD_OUT.
        _, sold_out = await campaign(1, 100)
        await app.admission.redeem(
            RedeemRequest(
                member_id=member.id, campaign_id=sold_out, quantity=1, idempotency_key="sell-1"
            )
        )
        return Templates(member_t, campaign_t, member.id, campaign_id, sold_out)
    finally:
        await app.committer.close()
        await app.calls.aclose()
        await app.redis.aclose()
        await app.pool.close()


def _new_ids(n: int) -> list[str]:
    raw = os.urandom(16 * n)
    return [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, 16 * n, 16)]


def clone(database_url: str, template: Template, copies: int) -> tuple[list[str], float]:
    """COPYs `copies` clones of the template in one transaction; (their ids, seconds)."""
    started = time.monotonic()
    ids_per_clone = [_new_ids(template.slots) for _ in range(copies)]
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        for table, (columns, lines) in template.tables.items():
            with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                buffer: list[str] = []
                size = 0
                for ids in ids_per_clone:
                    for parts in lines:
                        text = "".join(p if isinstance(p, str) else ids[p] for p in parts)
                        buffer.append(text)
                        size += len(text)
                    if size >= _CHUNK_BYTES:
                        copy.write("".join(buffer))
                        buffer, size = [], 0
                if buffer:
                    copy.write("".join(buffer))
    with psycopg.connect(database_url, autocommit=True) as conn:
        # What autovacuum would do soon after a bulk load, done now rather than during the
        # loads: plans that know the sizes, the visibility map set.
        conn.execute(f"VACUUM (ANALYZE) {', '.join(template.tables)}")
    return [ids[template.anchor] for ids in ids_per_clone], time.monotonic() - started
