"""`surge codes import` loads a file into a pool item's codes in the test database: counts,
the file's line numbers for rejected lines, the audit subject, and exit 2 when refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

from server.app import Stores
from tests.cli import surge
from tests.conftest import Running
from tests.inventory.codes_helpers import pool, pool_item


def _surge(stores: Stores, *args: str) -> subprocess.CompletedProcess[str]:
    return surge(stores, "codes", "import", *args)


async def test_the_cli_loads_a_file_and_reports_rejected_lines(
    server: Running, clean: Stores, tmp_path: Path
) -> None:
    item = await pool_item(server.api)
    codes = tmp_path / "codes.csv"
    codes.write_text('GIFT-1\nGIFT-2,batch 7\n\nGIFT-1\n"GIFT 3"\n' + "z" * 129 + "\nGIFT-4\n")

    first = _surge(clean, "--item", item.id, "--subject", "ops:alice", str(codes))
    again = _surge(clean, "--item", item.id, str(codes))

    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"item {item.id}: loaded 3, rejected 4, available now 3",
        "line 3: EMPTY",
        "line 4: DUPLICATE_IN_FILE",
        "line 5: NOT_PRINTABLE",
        "line 6: TOO_LONG",
    ]
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == f"item {item.id}: loaded 0, rejected 7, available now 3"
    assert "line 1: ALREADY_LOADED" in again.stdout.splitlines()
    assert (await pool(server, item.id)).loaded == 3
    async with server.app.pool.connection() as conn:
        subjects = await (
            await conn.execute(
                "SELECT subject FROM audit_events WHERE action = 'codes.import_codes' ORDER BY id"
            )
        ).fetchall()
    assert len(subjects) == 2
    assert subjects[0] == ("ops:alice",) and subjects[1][0].startswith("cli:")


async def test_the_cli_refuses_a_generated_item_and_a_missing_file(
    server: Running, clean: Stores, tmp_path: Path
) -> None:
    generated = await server.api.item()
    codes = tmp_path / "codes.csv"
    codes.write_text("A-1\n")

    refused = _surge(clean, "--item", generated.id, str(codes))
    missing = _surge(clean, "--item", generated.id, str(tmp_path / "nope.csv"))

    assert refused.returncode == 2 and "NOT_A_POOL_ITEM" in refused.stderr
    assert missing.returncode == 2 and "cannot read" in missing.stderr
