"""Databases of their own for the migration tests, on the session's PostgreSQL: created
empty (from template1, as a new deployment's would be) and dropped at the end."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from server.app import Stores


@contextmanager
def scratch_database(stores: Stores, label: str) -> Iterator[str]:
    """Yields the conninfo of a new empty database; drops it afterwards."""
    name = f"surge_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stores.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield conninfo.make_conninfo(stores.database_url, dbname=name)
    finally:
        with psycopg.connect(stores.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _pg_dump(url: str) -> str:
    """pg_dump of the server's own major version (an older one refuses a newer server);
    /usr/bin/pg_dump on Debian is a wrapper that may pick another version."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    versioned = Path(f"/usr/lib/postgresql/{int(row[0]) // 10000}/bin/pg_dump")
    if versioned.exists():
        return str(versioned)
    found = shutil.which("pg_dump")
    assert found is not None, "pg_dump not found"
    return found


def schema_dump(url: str) -> list[str]:
    """The schema as pg_dump writes it, line by line, less the psql meta-commands
    (\\restrict with a random key) that recent minor releases put around a dump."""
    out = subprocess.run(
        [_pg_dump(url), "--schema-only", "--no-owner", "--no-privileges", "-d", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if not line.startswith("\\")]
