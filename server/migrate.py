"""Brings a database's schema and SQL functions up to date, under one advisory lock so
several servers may start at once.

1. Numbered migrations, server/migrations/NNNN_*.sql: schema only (tables, constraints,
   indexes, data backfills), applied in name order, each once, each in its own
   transaction, tracked by name in schema_migrations. A backfill is plain SQL: the
   functions below do not exist yet on a fresh database when it runs (and would be
   today's version, not the one the migration was written against).
2. Repeatable files, <domain>/sql/*.sql: each domain's functions as CREATE OR REPLACE
   definitions, next to the code that calls them. Applied after the migrations, domain by
   domain in REPEATABLE_DOMAINS order and by file name within a domain, each in its own
   transaction, tracked in schema_functions with a SHA-256 of the file: a file whose
   checksum differs from the recorded one (or that has none) is applied again, an
   unchanged one is not. Deleting a file does not drop its functions: a numbered migration
   does that.

Hand-rolled rather than yoyo-migrations because PL/pgSQL bodies ($$ ... $$) go to the
server whole here, with no statement splitter in between.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources

import psycopg

_LOCK_ID = 0x5375726765  # "Surge"

# Domains whose sql/ folder holds repeatable files, in the order they are applied. PL/pgSQL
# resolves the functions it calls only when it runs, so today the order matters for
# nothing but reproducibility; it follows the calls (flashsale's commit_redemptions calls
# the points ledger's functions) so a LANGUAGE sql body, which is checked when created,
# finds what it calls. events and auditlog call nothing (events.append_event is called by
# every domain that records a change; auditlog's trigger guards
# audit_events).
REPEATABLE_DOMAINS = ("events", "auditlog", "points", "inventory", "flashsale", "lottery")


@dataclass(frozen=True)
class Applied:
    """What one migrate() call applied: migration file names and repeatable file names
    (domain/file.sql), each in the order applied."""

    migrations: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("server") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name, f.read_text()) for f in files]


def function_files() -> list[tuple[str, str]]:
    """(domain/file.sql, text) of every repeatable file, in the order they are applied."""
    found: list[tuple[str, str]] = []
    for domain in REPEATABLE_DOMAINS:
        folder = resources.files(domain) / "sql"
        if not folder.is_dir():
            continue
        files = sorted(
            (f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name
        )
        found.extend((f"{domain}/{f.name}", f.read_text()) for f in files)
    return found


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def migrate(database_url: str) -> Applied:
    """Applies what is missing or changed; returns what this call applied."""
    applied = Applied()
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
                applied.migrations.append(name)

            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_functions ("
                " name text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            recorded: dict[str, str] = dict(
                conn.execute("SELECT name, checksum FROM schema_functions").fetchall()
            )
            for name, sql in function_files():
                digest = checksum(sql)
                if recorded.get(name) == digest:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute(
                        "INSERT INTO schema_functions (name, checksum) VALUES (%s, %s)"
                        " ON CONFLICT (name) DO UPDATE"
                        " SET checksum = excluded.checksum, applied_at = now()",
                        (name, digest),
                    )
                applied.functions.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied
