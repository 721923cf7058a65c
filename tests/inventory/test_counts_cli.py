"""`surge stock count` on a small CSV file in the test database: the printed report, the
exit code (1 when lines were refused), a malformed file refused whole, a dry run."""

from __future__ import annotations

import subprocess
from pathlib import Path

from loyalty.v1 import catalog_pb2
from server.app import Stores
from tests.cli import surge
from tests.conftest import Running


def _surge(stores: Stores, *args: str) -> subprocess.CompletedProcess[str]:
    return surge(stores, "stock", "count", *args)


async def _stock(server: Running, item_id: str) -> int:
    item = await server.api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item_id))
    return item.stock_on_hand


async def test_the_cli_counts_a_file_and_prints_the_report(
    server: Running, clean: Stores, tmp_path: Path
) -> None:
    mug = await server.api.item(stock=10)
    cap = await server.api.item(stock=3)
    counts = tmp_path / "count.csv"
    counts.write_text(f"\ufeffsku,counted\n{mug.sku},12\n\n{cap.sku}, 3\nGHOST,4\n")

    dry = _surge(clean, str(counts), "--location", "default", "--dry-run")
    assert await _stock(server, mug.id) == 10  # the dry run wrote nothing
    done = _surge(
        clean, str(counts), "--location", "default", "--key", "k-1", "--subject", "ops:bo"
    )
    again = _surge(clean, str(counts), "--location", "default", "--key", "k-1")

    assert dry.returncode == 1, dry.stderr
    assert dry.stdout.splitlines()[0] == "location default: dry run, nothing written"
    assert done.returncode == 1, done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("location default: count ") and out[0].endswith(", key k-1")
    assert out[2].split() == ["2", mug.sku, "12", "10", "+2", "ADJUSTED"]
    assert out[3].split() == ["5", "GHOST", "4", "0", "+0", "UNKNOWN_SKU"]
    assert out[4] == (
        "matched 1, adjusted 1, unknown sku 1, below allotted 0, duplicate sku 0; "
        "units added 2, removed 0"
    )
    assert again.returncode == 1 and "(replayed" in again.stdout.splitlines()[0]
    assert await _stock(server, mug.id) == 12  # applied once
    async with server.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT subject FROM audit_events WHERE action = 'stock_counts.submit_stock_count'"
        )
        assert await cur.fetchall() == [("ops:bo",)]


async def test_a_clean_count_exits_zero(server: Running, clean: Stores, tmp_path: Path) -> None:
    mug = await server.api.item(stock=10)
    counts = tmp_path / "count.csv"
    counts.write_text(f"SKU,Counted\r\n{mug.sku},9\r\n")

    done = _surge(clean, str(counts), "--location", "default")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith("units added 0, removed 1")
    assert await _stock(server, mug.id) == 9


async def test_a_malformed_file_is_refused_before_anything_is_sent(
    server: Running, clean: Stores, tmp_path: Path
) -> None:
    mug = await server.api.item(stock=10)
    counts = tmp_path / "count.csv"
    counts.write_text(f"sku,counted\n{mug.sku},5\n\nOTHER,-2\n")
    no_header = tmp_path / "bare.csv"
    no_header.write_text(f"{mug.sku},5\n")

    bad = _surge(clean, str(counts), "--location", "default")
    bare = _surge(clean, str(no_header), "--location", "default")
    nowhere = _surge(clean, str(no_header), "--location", "nowhere")
    missing = _surge(clean, str(tmp_path / "nope.csv"), "--location", "default")

    assert bad.returncode == 2 and "line 4: counted must be a whole number" in bad.stderr
    assert bare.returncode == 2 and "line 1: the header must be sku,counted" in bare.stderr
    assert nowhere.returncode == 2 and "header" in nowhere.stderr
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert await _stock(server, mug.id) == 10


async def test_an_unknown_location_is_refused(
    server: Running, clean: Stores, tmp_path: Path
) -> None:
    mug = await server.api.item(stock=10)
    counts = tmp_path / "count.csv"
    counts.write_text(f"sku,counted\n{mug.sku},5\n")

    nowhere = _surge(clean, str(counts), "--location", "nowhere")

    assert nowhere.returncode == 2 and "NOT_FOUND" in nowhere.stderr
    assert await _stock(server, mug.id) == 10
