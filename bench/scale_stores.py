"""The stores as `make bench-scale` reads and prepares them: a database of its own per data
set, the project's rebuild, Redis memory, PostgreSQL table sizes and redemptions, and a wait
for the server's start-up work."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

import psycopg
import redis

from bench.servers import ROOT, with_database
from server.embedded import LocalStack


def rebuild(stack: LocalStack) -> tuple[float, str]:
    """`surge rebuild-cache` against the stack: (seconds, what it printed)."""
    env = dict(os.environ, DATABASE_URL=stack.database_url, REDIS_URL=stack.redis_url)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "rebuild-cache"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    return time.monotonic() - started, done.stdout.strip()


def redis_memory(client: redis.Redis) -> tuple[int, int]:
    """(used_memory bytes, keys)."""
    return int(client.info("memory")["used_memory"]), int(client.dbsize())


def pg_sizes(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT tablename, pg_total_relation_size(quote_ident(tablename)) "
            "FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {str(t): int(n) for t, n in rows}


def redemptions(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return int(conn.execute("SELECT count(*) FROM redemptions").fetchone()[0])  # type: ignore[index]


def settled_count(database_url: str, wait_s: float = 10.0) -> int:
    """The redemptions count once the group commit has nothing left to write."""
    last, deadline = -1, time.monotonic() + wait_s
    while time.monotonic() < deadline:
        now = redemptions(database_url)
        if now == last:
            return now
        last = now
        time.sleep(0.5)
    return last


# What a committed redemption writes (flashsale/sql/commit_redemptions.sql, with the lots and
# stock functions it calls): new rows, and new versions of the rows it updates.
REDEMPTION_TABLES = (
    "redemptions",
    "campaign_members",
    "ledger_entries",
    "lot_spends",
    "point_lots",
    "events",
    "stock_movements",
    "stock_levels",
    "campaign_stock",
    "campaigns",
    "members",
)


def wait_quiet(database_url: str, max_s: float) -> float:
    """Waits until no backend works on the database (the server's start-up jobs, e.g. the
    leader's first tier evaluation over every member; autovacuum) for a second in a row, at
    most max_s; the seconds waited."""
    started = time.monotonic()
    quiet_since = None
    with psycopg.connect(database_url, autocommit=True) as conn:
        name = database_url.rsplit("/", 1)[1]
        while time.monotonic() - started < max_s:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND state IS DISTINCT FROM 'idle' AND pid <> pg_backend_pid()",
                (name,),
            ).fetchone()
            now = time.monotonic()
            if busy and busy[0]:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= 1.0:
                break
            time.sleep(0.25)
    return time.monotonic() - started


@dataclass(frozen=True)
class SetStack(LocalStack):
    """The run's stores, with the data set's own database."""

    database: str = "surge"

    @property
    def database_url(self) -> str:
        return with_database(super().database_url, self.database)


def fresh_database(stack: LocalStack, name: str) -> SetStack:
    """A database of its own for a data set, copied from the migrated, still empty one; and
    an empty Redis."""
    with psycopg.connect(with_database(stack.database_url, "postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name} TEMPLATE {stack.database_url.rsplit('/', 1)[1]}")
    with redis.Redis.from_url(stack.redis_url) as client:
        client.flushall()
    return SetStack(stack.data_dir, stack.redis_port, stack.postgres_port, name)


def mark_tier_run_done(database_url: str) -> None:
    """Records the daily tier evaluation as run now, the row points/jobs.py claims a run with:
    the server's leader then skips it for a day instead of walking every member at start."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO ledger_jobs (name, last_run_at) VALUES ('tiers', now()) "
            "ON CONFLICT (name) DO UPDATE SET last_run_at = now()"
        )
