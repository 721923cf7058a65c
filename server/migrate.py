"""Applies server/migrations/*.sql in name order, each once, each in its own transaction.

Plain SQL files, tracked in schema_migrations; an advisory lock lets several servers start
at once. Hand-rolled rather than yoyo-migrations because PL/pgSQL bodies ($$ ... $$) go to
the server whole here, with no statement splitter in between.
"""

from __future__ import annotations

from importlib import resources

import psycopg

_LOCK_ID = 0x5375726765  # "Surge"


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("server") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name, f.read_text()) for f in files]


def migrate(database_url: str) -> list[str]:
    """Returns the names of the migrations applied by this call."""
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
            for name, sql in migration_files():
                if name in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())  # no parameters: sent whole, many statements
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied
