"""The audit trail's tests start from an empty trail too (the session's `clean` empties the
domain's tables; audit_events has no foreign key to be emptied with them)."""

from __future__ import annotations

import psycopg
import pytest

from server.app import Stores


@pytest.fixture
def clean(clean: Stores) -> Stores:
    with psycopg.connect(clean.database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE audit_events")
    return clean
