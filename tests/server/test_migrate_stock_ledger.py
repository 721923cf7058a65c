"""Migration 0013 turns a database of the schema before the stock ledger (0001-0012) into
the ledger's first movements, for every shape the data can have: manual adjustments, an
ended campaign (EndCampaign gave the rest back) with a cancel after its end, a running one
with a payment pending and one expired, a delivered, a shipped and a returned redemption
with its exchange, and a code-pool item. The stock audit passes on the upgraded database
and the levels are what was there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from inventory.audit import AUDIT_CHECKS as STOCK_CHECKS
from server.app import Stores
from server.migrate import migrate, migration_files
from tests.server.databases import scratch_database

BEFORE_LEDGER = "0013"


@pytest.fixture
def old(stores: Stores) -> Iterator[str]:
    """A database with the migrations before the stock ledger applied, as migrate() records
    them (no functions: the rows below are written as those versions left them)."""
    with scratch_database(stores, "ledger") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for name, text in migration_files():
                if name >= BEFORE_LEDGER:
                    break
                with conn.transaction():
                    conn.execute(text.encode())
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
        yield url


def _id() -> str:
    return str(uuid.uuid4())


def _insert(conn: psycopg.Connection[Any], table: str, **values: Any) -> None:
    columns = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(values.values()))


def _seed(url: str) -> dict[str, str]:
    ids = {name: _id() for name in ("kettle", "card", "ended", "running", "pool", "ann")}
    with psycopg.connect(url) as conn:
        # The kettle: 10 available now, after +5 and -2 by hand.
        _insert(
            conn,
            "items",
            id=ids["kettle"],
            sku="KETTLE",
            name="Kettle",
            kind="PHYSICAL",
            stock_on_hand=10,
        )
        for delta, key in ((5, "a1"), (-2, "a2")):
            _insert(
                conn,
                "stock_adjustments",
                item_id=ids["kettle"],
                delta=delta,
                reason="by hand",
                idempotency_key=key,
                stock_after=10,
            )
        _insert(conn, "members", id=ids["ann"], display_name="Ann")
        # Ended: sold 3 (delivered, shipped, returned and exchanged); a cancel after the
        # end put 1 back in its allotment (4 = 3 sold + 1).
        _insert(
            conn,
            "campaigns",
            id=ids["ended"],
            item_id=ids["kettle"],
            name="ended",
            units_allotted=4,
            units_committed=3,
            points_price=100,
            cash_price_cents=0,
            per_member_limit=9,
            starts_at="2026-01-01",
            ends_at="2026-01-02",
        )
        # Running: 5 allotted, 1 sold, 1 waiting for payment, 1 expired.
        _insert(
            conn,
            "campaigns",
            id=ids["running"],
            item_id=ids["kettle"],
            name="running",
            units_allotted=5,
            units_committed=1,
            units_held=1,
            points_price=100,
            cash_price_cents=500,
            per_member_limit=9,
            starts_at="2026-01-01",
            ends_at="2099-01-01",
        )
        shipped = {"carrier": "SF", "tracking_number": "1", "shipped_at": "2026-01-03"}
        returned = _id()
        for campaign, status, extra in (
            ("ended", "DELIVERED", {**shipped, "delivered_at": "2026-01-04"}),
            ("ended", "SHIPPED", shipped),
            ("ended", "RETURNED", {**shipped, "return_disposition": "RESTOCK", "id": returned}),
            ("ended", "CANCELLED", {}),
            ("running", "COMMITTED", {}),
            ("running", "PENDING_PAYMENT", {"payment_due_at": "2099-01-01"}),
            ("running", "EXPIRED", {}),
        ):
            _insert(
                conn,
                "redemptions",
                **{"id": _id(), **extra},
                member_id=ids["ann"],
                campaign_id=ids[campaign],
                quantity=1,
                points_total=100,
                cash_total_cents=0,
                status=status,
                idempotency_key=_id(),
                request_hash="h",
            )
        replacement = _id()
        _insert(
            conn,
            "redemptions",
            id=replacement,
            member_id=ids["ann"],
            campaign_id=ids["ended"],
            quantity=1,
            points_total=0,
            cash_total_cents=0,
            status="COMMITTED",
            idempotency_key=_id(),
            request_hash="exchange",
            replacement_of=returned,
        )
        conn.execute(
            "UPDATE redemptions SET replaced_by = %s WHERE id = %s", (replacement, returned)
        )
        # A code pool: 3 codes loaded, 1 sold through a campaign of 2.
        _insert(
            conn,
            "items",
            id=ids["pool"],
            sku="CARD",
            name="Card",
            kind="VIRTUAL",
            stock_on_hand=1,
            code_source="POOL",
        )
        _insert(
            conn,
            "campaigns",
            id=ids["card"],
            item_id=ids["pool"],
            name="card",
            units_allotted=2,
            units_committed=1,
            points_price=100,
            cash_price_cents=0,
            per_member_limit=9,
            starts_at="2026-01-01",
            ends_at="2099-01-01",
        )
        sold = _id()
        _insert(
            conn,
            "redemptions",
            id=sold,
            member_id=ids["ann"],
            campaign_id=ids["card"],
            quantity=1,
            points_total=100,
            cash_total_cents=0,
            status="COMMITTED",
            idempotency_key=_id(),
            request_hash="h",
        )
        for code, redemption in (("C1", sold), ("C2", None), ("C3", None)):
            _insert(
                conn,
                "item_codes",
                item_id=ids["pool"],
                code=code,
                status="ISSUED" if redemption else "AVAILABLE",
                redemption_id=redemption,
            )
    return ids


def _levels(url: str) -> dict[str, tuple[int, int, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT i.sku, s.on_hand, s.allotted, i.stock_on_hand FROM items i "
            "JOIN stock_levels s ON s.item_id = i.id JOIN locations l ON l.id = s.location_id "
            "WHERE l.code = 'default'"
        ).fetchall()
    return {sku: (on_hand, allotted, available) for sku, on_hand, allotted, available in rows}


def test_every_shape_of_todays_data_becomes_movements_that_add_up(old: str) -> None:
    ids = _seed(old)
    migrate(old)
    # Kettle: 10 available + 1 stranded in the ended campaign + 4 in the running one
    # (the pending unit included) on hand; card: 1 available + 1 allotted.
    assert _levels(old) == {"KETTLE": (15, 5, 10), "CARD": (2, 1, 1)}
    with psycopg.connect(old) as conn:
        failing = [title for title, query in STOCK_CHECKS if conn.execute(query).fetchall()]
        kinds = conn.execute(
            "SELECT kind, count(*), sum(on_hand_delta), sum(allotted_delta) "
            "FROM stock_movements WHERE item_id = %s GROUP BY kind ORDER BY kind",
            (ids["kettle"],),
        ).fetchall()
        remaining: dict[str, int] = dict(
            conn.execute("SELECT campaign_id::text, remaining FROM campaign_stock").fetchall()
        )
        # Migration 0019 (bundles): each row's item is its campaign's.
        other_item = conn.execute(
            "SELECT count(*) FROM campaign_stock cs JOIN campaigns c ON c.id = cs.campaign_id "
            "WHERE cs.item_id IS DISTINCT FROM c.item_id"
        ).fetchone()
    assert failing == []
    # Opening balance: 15 now - 3 by hand + 5 sold (4 of campaigns, 1 exchange) = 17.
    assert kinds == [
        ("adjusted", 2, 3, 0),
        ("allotted", 2, 0, 9),
        ("received", 1, 17, 0),
        ("redeemed", 5, -5, -4),
    ]
    assert remaining == {ids["ended"]: 1, ids["running"]: 4, ids["card"]: 1}
    assert other_item == (0,)
