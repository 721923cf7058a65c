"""surge migrate on databases of its own: numbered schema migrations once each, then the
repeatable function files (points/sql, flashsale/sql) whenever their checksum changes."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import server.migrate
from server.app import Stores
from server.migrate import Applied, checksum, function_files, migrate, migration_files
from tests.server.databases import scratch_database

FUNCTIONS = {
    "append_event",
    "audit_events_refuse_change",
    "commit_draws",
    "commit_redemptions",
    "events_notify",
    "expire_due_lots",
    "post_entry",
    "post_points_back",
    "repay_debt",
    "restore_lots",
    "reverse_points_back",
    "spend_lots",
    "stock_allot",
    "stock_default_location",
    "stock_move",
    "stock_redeem",
    "stock_lock",
    "stock_lock_items",
    "stock_low_check",
    "stock_low_defer",
    "stock_low_settle",
    "stock_release",
    "stock_return",
    "stock_take_available",
    "stock_unredeem",
}
FILES = [
    "events/events.sql",
    "auditlog/audit_events.sql",
    "points/debt.sql",
    "points/entries.sql",
    "points/lots.sql",
    "inventory/low_stock.sql",
    "inventory/stock.sql",
    "flashsale/commit_redemptions.sql",
    "flashsale/points_back.sql",
    "lottery/draws.sql",
]


@pytest.fixture
def fresh(stores: Stores) -> Iterator[str]:
    with scratch_database(stores, "migrate") as url:
        yield url


def _functions(url: str) -> dict[str, Any]:
    """Every function in schema public: name -> (definition, settings)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT p.proname, pg_get_functiondef(p.oid), p.proconfig FROM pg_proc p"
            " WHERE p.pronamespace = 'public'::regnamespace"
        ).fetchall()
    return {name: (definition, config) for name, definition, config in rows}


def _recorded(url: str) -> dict[str, tuple[str, Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT name, checksum, applied_at FROM schema_functions").fetchall()
    return {name: (digest, at) for name, digest, at in rows}


def test_the_file_list_is_events_auditlog_points_inventory_flashsale_then_lottery_by_name() -> None:
    assert [name for name, _ in function_files()] == FILES


def test_numbered_migrations_define_no_functions() -> None:
    """Functions live in the repeatable files only, so the one definition there is the one
    that runs (a migration's would be replaced by it on every fresh install anyway)."""
    for name, text in migration_files():
        assert not re.search(r"create\s+(or\s+replace\s+)?function", text, re.I), name
    for name, text in function_files():
        # Applied again on every change: nothing in them may fail the second time.
        assert not re.search(r"create\s+function", text, re.I), name


def test_a_fresh_database_gets_every_function_then_nothing_again(fresh: str) -> None:
    first = migrate(fresh)
    assert first == Applied([name for name, _ in migration_files()], FILES)
    functions = _functions(fresh)
    assert set(functions) == FUNCTIONS
    # 0004's function-level settings came along with the definition.
    assert sorted(functions["commit_redemptions"][1]) == [
        "enable_seqscan=off",
        "plan_cache_mode=force_generic_plan",
    ]
    recorded = _recorded(fresh)
    assert {name: digest for name, (digest, _) in recorded.items()} == {
        name: checksum(text) for name, text in function_files()
    }

    assert migrate(fresh) == Applied([], [])
    assert _recorded(fresh) == recorded  # not even applied_at moved
    assert _functions(fresh) == functions


def test_a_changed_checksum_applies_exactly_that_file_again(fresh: str) -> None:
    migrate(fresh)
    before = _recorded(fresh)
    with psycopg.connect(fresh) as conn:
        conn.execute(
            "UPDATE schema_functions SET checksum = 'stale' WHERE name = 'points/lots.sql'"
        )
    assert migrate(fresh) == Applied([], ["points/lots.sql"])
    after = _recorded(fresh)
    assert after["points/lots.sql"][0] == before["points/lots.sql"][0]
    assert after["points/lots.sql"][1] > before["points/lots.sql"][1]
    assert {k: v for k, v in after.items() if k != "points/lots.sql"} == {
        k: v for k, v in before.items() if k != "points/lots.sql"
    }

    # Every file can be applied over itself (the type in commit_redemptions.sql included).
    with psycopg.connect(fresh) as conn:
        conn.execute("UPDATE schema_functions SET checksum = 'stale'")
    assert migrate(fresh) == Applied([], FILES)
    assert migrate(fresh) == Applied([], [])


def test_a_changed_file_is_applied_with_its_new_content(
    fresh: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(fresh)
    real = function_files()
    marker = "-- changed by test_migrate"
    changed = [
        (name, text.replace("BEGIN\n", f"BEGIN\n    {marker}\n", 1))
        if name == "flashsale/commit_redemptions.sql"
        else (name, text)
        for name, text in real
    ]
    monkeypatch.setattr(server.migrate, "function_files", lambda: changed)
    assert migrate(fresh) == Applied([], ["flashsale/commit_redemptions.sql"])
    assert marker in _functions(fresh)["commit_redemptions"][0]

    monkeypatch.setattr(server.migrate, "function_files", lambda: real)
    assert migrate(fresh) == Applied([], ["flashsale/commit_redemptions.sql"])
    assert marker not in _functions(fresh)["commit_redemptions"][0]
    with psycopg.connect(fresh) as conn:  # the type it dropped and made again works
        assert conn.execute("SELECT * FROM commit_redemptions('[]')").fetchall() == []


def test_servers_starting_together_apply_everything_once(fresh: str) -> None:
    results: list[Applied] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(fresh))
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(n for r in results for n in r.migrations) == sorted(
        name for name, _ in migration_files()
    )
    assert sorted(n for r in results for n in r.functions) == sorted(FILES)
