"""A database made by the migrations as they were before the functions left them (0001-0004
verbatim, fixtures/migrations_0001_0004/), with data in it, upgrades with today's migrate()
and ends as a fresh install: the same schema, its rows untouched (in the columns they
had), and a redemption committed after the upgrade goes through today's functions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from inventory.audit import AUDIT_CHECKS as STOCK_CHECKS
from server.app import Stores
from server.migrate import Applied, function_files, migrate, migration_files
from tests.server.databases import schema_dump, scratch_database

OLD_MIGRATIONS = Path(__file__).parent / "fixtures" / "migrations_0001_0004"
NOW = datetime.now(UTC)


def _migrate_as_before(url: str) -> None:
    """What migrate() did before: each file in name order, recorded by name."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for f in sorted(OLD_MIGRATIONS.glob("*.sql")):
            with conn.transaction():
                conn.execute(f.read_bytes())
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (f.name,))


def _member(
    conn: psycopg.Connection[Any], name: str, lots: list[tuple[int, datetime | None]]
) -> str:
    """A member who earned each (points, expiry) as a lot with its ledger entry."""
    row = conn.execute(
        "INSERT INTO members (display_name) VALUES (%s) RETURNING id::text", (name,)
    ).fetchone()
    assert row is not None
    for i, (points, expires) in enumerate(lots):
        conn.execute(
            "INSERT INTO point_lots (member_id, source, amount, remaining, qualifying, "
            "earned_at, expires_at, reference) VALUES (%s, 'earn', %s, %s, %s, %s, %s, %s)",
            (row[0], points, points, points, NOW - timedelta(days=400), expires, f"earn:{i}"),
        )
        conn.execute(
            "SELECT post_entry(%s, 'earn', %s, 0, %s, 'purchase', '', %s)",
            (row[0], points, f"earn:{i}", f"{name}-earn-{i}"),
        )
    conn.execute(
        "UPDATE members SET lifetime_earned = %s WHERE id = %s",
        (sum(p for p, _ in lots), row[0]),
    )
    return str(row[0])


def _campaign(conn: psycopg.Connection[Any], item: str, points: int, cash: int) -> str:
    row = conn.execute(
        "INSERT INTO campaigns (item_id, name, units_allotted, points_price, cash_price_cents, "
        "per_member_limit, starts_at, ends_at) VALUES (%s, %s, 5, %s, %s, 2, %s, %s) "
        "RETURNING id::text",
        (
            item,
            f"sale {points}/{cash}",
            points,
            cash,
            NOW - timedelta(hours=1),
            NOW + timedelta(hours=1),
        ),
    ).fetchone()
    assert row is not None
    return str(row[0])


def _entry(
    member: str, campaign: str, key: str, quantity: int, points: int, *, cash: int = 0
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": str(uuid.uuid4()),
        "member_id": member,
        "campaign_id": campaign,
        "quantity": quantity,
        "points_total": points * quantity,
        "cash_total_cents": cash * quantity,
        "idempotency_key": key,
        "request_hash": f"hash-{key}",
        "shipping_address": None,
        "redemption_code": None,
        "requested_at": now.isoformat(),
        "fence": (now + timedelta(seconds=30)).isoformat(),
        "payment_due_at": (now + timedelta(minutes=15)).isoformat() if cash else None,
    }


def _commit(conn: psycopg.Connection[Any], entries: list[dict[str, Any]]) -> list[str]:
    batch = [dict(e, ord=i) for i, e in enumerate(entries)]
    rows = conn.execute(
        "SELECT outcome FROM commit_redemptions(%s) ORDER BY ord", (Jsonb(batch),)
    ).fetchall()
    return [r[0] for r in rows]


def _seed(url: str) -> dict[str, str]:
    """Items, members with entries and lots (one due to expire), two campaigns, committed
    redemptions and one waiting for payment, made by the old functions."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "INSERT INTO items (sku, name, kind, stock_on_hand) "
            "VALUES ('KETTLE', 'Kettle', 'PHYSICAL', 40) RETURNING id::text"
        ).fetchone()
        assert row is not None
        item = row[0]
        later = NOW + timedelta(days=90)
        ids = {
            "ann": _member(conn, "ann", [(500, later), (300, None)]),
            "bob": _member(conn, "bob", [(1000, None)]),
            "cat": _member(conn, "cat", [(400, later)]),
            # Untouched before the upgrade: a lot already due, expired by the first
            # commit after it.
            "dan": _member(conn, "dan", [(250, NOW - timedelta(days=1)), (600, None)]),
            "points": _campaign(conn, item, 300, 0),
            "cash": _campaign(conn, item, 100, 1500),
        }
        conn.execute("UPDATE items SET stock_on_hand = stock_on_hand - 10 WHERE id = %s", (item,))
        outcomes = _commit(
            conn,
            [
                _entry(ids["ann"], ids["points"], "a1", 2, 300),
                _entry(ids["bob"], ids["points"], "b1", 1, 300),
                _entry(ids["bob"], ids["points"], "b2", 2, 300),  # over bob's limit of 2
                _entry(ids["cat"], ids["cash"], "c1", 1, 100, cash=1500),
            ],
        )
        assert outcomes == ["COMMITTED", "COMMITTED", "LIMIT_EXCEEDED", "PENDING_PAYMENT"]
    return ids


def _columns(url: str) -> dict[str, list[str]]:
    """Every table in schema public -> its columns, in order; not migrate()'s own records,
    which grow with each migration and function file applied."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
            " AND c.table_name NOT IN ('schema_functions', 'schema_migrations')"
            " ORDER BY c.table_name, c.ordinal_position"
        ).fetchall()
    columns: dict[str, list[str]] = {}
    for table, column in rows:
        columns.setdefault(table, []).append(column)
    return columns


def _rows(url: str, columns: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every row of these tables (only these columns), as text, in a stable order."""
    with psycopg.connect(url) as conn:
        query = sql.SQL("SELECT ROW({})::text FROM {} ORDER BY 1")
        return {
            table: [
                r[0]
                for r in conn.execute(
                    query.format(
                        sql.SQL(", ").join(map(sql.Identifier, names)), sql.Identifier(table)
                    )
                )
            ]
            for table, names in columns.items()
        }


@pytest.fixture
def databases(stores: Stores) -> Iterator[tuple[str, str]]:
    with (
        scratch_database(stores, "upgraded") as upgraded,
        scratch_database(stores, "fresh") as fresh,
    ):
        yield upgraded, fresh


def test_a_database_of_the_old_migrations_upgrades_to_a_fresh_install(
    databases: tuple[str, str],
) -> None:
    upgraded, fresh = databases
    _migrate_as_before(upgraded)
    ids = _seed(upgraded)
    before = _columns(upgraded)
    rows = _rows(upgraded, before)
    assert len(rows["redemptions"]) == 3 and len(rows["lot_spends"]) == 3

    # 0001-0004 are recorded by name, so only the migrations written since and the
    # functions are applied.
    newer = [name for name, _ in migration_files() if not (OLD_MIGRATIONS / name).exists()]
    assert newer and newer[0] > "0004"
    assert migrate(upgraded) == Applied(newer, [name for name, _ in function_files()])
    migrate(fresh)
    assert schema_dump(upgraded) == schema_dump(fresh)
    assert _rows(upgraded, before) == rows
    with psycopg.connect(upgraded) as conn:  # 0006: the entries before it name no actor
        assert conn.execute(
            "SELECT count(*) FROM ledger_entries WHERE actor IS NOT NULL"
        ).fetchone() == (0,)
    assert migrate(upgraded) == Applied([], [])
    # 0013: the stock there is became the ledger's first movements at the default location:
    # 40 received (the opening balance), 5 + 5 allotted, 3 redeemed; the audit passes.
    assert _stock(upgraded) == (37, 7, 30)
    assert _stock_audit(upgraded) == []

    with psycopg.connect(upgraded) as conn:
        outcomes = _commit(
            conn,
            [
                _entry(ids["dan"], ids["points"], "d1", 2, 300),
                _entry(ids["ann"], ids["points"], "a1", 2, 300),  # a replay: the key is taken
            ],
        )
        assert outcomes == ["COMMITTED", "EXISTING"]
        ledger = conn.execute(
            "SELECT kind, amount, balance_after FROM ledger_entries"
            " WHERE member_id = %s ORDER BY seq",
            (ids["dan"],),
        ).fetchall()
        # The due lot expired first (points/sql/lots.sql), then the never-expiring one paid.
        assert ledger == [
            ("earn", 250, 250),
            ("earn", 600, 850),
            ("expire", -250, 600),
            ("redeem", -600, 0),
        ]
        member = conn.execute(
            "SELECT points_balance, version FROM members WHERE id = %s", (ids["dan"],)
        ).fetchone()
        assert member is not None and member[0] == 0
        lots = conn.execute(
            "SELECT sum(remaining) FROM point_lots WHERE member_id = %s", (ids["dan"],)
        ).fetchone()
        assert lots == (0,)
        campaign = conn.execute(
            "SELECT units_committed, units_held FROM campaigns WHERE id = %s",
            (ids["points"],),
        ).fetchone()
        assert campaign == (5, 0)
    assert _stock(upgraded) == (35, 5, 30)  # dan's 2 units redeemed from the allotment
    assert _stock_audit(upgraded) == []


def _stock(url: str) -> tuple[int, int, int]:
    """(on hand, allotted, the item's available) of the seeded item."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT s.on_hand, s.allotted, i.stock_on_hand FROM items i "
            "JOIN stock_levels s ON s.item_id = i.id AND s.location_id = stock_default_location()"
        ).fetchone()
    assert row is not None
    return (int(row[0]), int(row[1]), int(row[2]))


def _stock_audit(url: str) -> list[str]:
    """The titles of the stock ledger's audit checks that find something."""
    with psycopg.connect(url) as conn:
        return [title for title, query in STOCK_CHECKS if conn.execute(query).fetchall()]
