"""`surge stock count`: submits a physical count of one location from a CSV file, straight
into PostgreSQL (like `surge codes import`), through the same checks as
StockCountService.SubmitStockCount.

    surge stock count FILE.csv --location CODE [--dry-run] [--key KEY] [--subject WHO]

The file has the header `sku,counted`, then one sku a line (a BOM and blank lines are
tolerated). A malformed line (wrong number of fields, empty sku, a count that is not a
whole number >= 0) is reported with its line number and the whole file is refused before
anything is sent. The count is idempotent by --key (a new one is made when none is given
and printed: run again with it to replay the saved report). The audit trail records the
change under the subject `cli:<os user>` (--subject to name someone else).

Prints the report: every line that did not match, then the totals. Exits 0 when every line
matched or was applied, 1 when lines were refused (unknown sku, below allotted, duplicate
sku: the rest was applied), 2 when the count was refused as a whole (unreadable or
malformed file, unknown location, a key reused with other lines): then nothing changed.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inventory.counts import CountReport

HEADER = ["sku", "counted"]


class MalformedFile(Exception):
    """The file cannot be a count: the message names the line."""


def add_parser(sub: Any) -> None:
    """Adds `stock` and its subcommands to the `surge` subcommands."""
    stock: argparse.ArgumentParser = sub.add_parser("stock", help="stock counts")
    actions = stock.add_subparsers(dest="stock_command", required=True)
    count = actions.add_parser("count", help="submit a physical count of a location (CSV)")
    count.add_argument("file", type=Path, help="CSV with the header sku,counted")
    count.add_argument("--location", required=True, help="the location's code, e.g. default")
    count.add_argument("--dry-run", action="store_true", help="report only, write nothing")
    count.add_argument("--key", default="", help="idempotency key (made up when not given)")
    count.add_argument(
        "--subject", default="", help="who counts, for the audit trail (cli:<os user>)"
    )


def read_count(path: Path) -> list[tuple[int, str, int]]:
    """(file line, sku, counted) of every line after the header; MalformedFile names a bad
    line."""
    lines: list[tuple[int, str, int]] = []
    header_seen = False
    # utf-8-sig: a spreadsheet's BOM is not part of the first field.
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            fields = [field.strip() for field in row]
            if not any(fields):
                continue  # a blank line
            if not header_seen:
                if [field.lower() for field in fields] != HEADER:
                    raise MalformedFile(f"line {reader.line_num}: the header must be sku,counted")
                header_seen = True
                continue
            if len(fields) != 2:
                raise MalformedFile(f"line {reader.line_num}: expected 2 fields, got {len(fields)}")
            sku, counted = fields
            if not sku:
                raise MalformedFile(f"line {reader.line_num}: the sku is empty")
            if not counted.isdigit():  # digits only: no sign, no decimals
                raise MalformedFile(
                    f"line {reader.line_num}: counted must be a whole number >= 0, not {counted!r}"
                )
            lines.append((reader.line_num, sku, int(counted)))
    if not header_seen:
        raise MalformedFile("the file is empty: the header must be sku,counted")
    return lines


async def run(args: argparse.Namespace, database_url: str) -> int:
    from psycopg_pool import AsyncConnectionPool

    from common.actor import Actor, acting_as
    from common.errors import DomainError
    from inventory.counts import StockCounts

    try:
        rows = read_count(args.file)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        print(f"cannot read {args.file}: {e}", file=sys.stderr)
        return 2
    except MalformedFile as e:
        print(f"{args.file}: {e}; nothing was sent", file=sys.stderr)
        return 2
    key = "" if args.dry_run else (args.key or f"cli-{uuid.uuid4()}")
    subject = args.subject or f"cli:{getpass.getuser()}"
    pool = AsyncConnectionPool(
        database_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    try:
        with acting_as(Actor(subject, "cli")):
            report = await StockCounts(pool).submit(
                location_code=args.location,
                lines=[(sku, counted) for _, sku, counted in rows],
                idempotency_key=key,
                dry_run=args.dry_run,
            )
    except DomainError as e:
        print(f"refused ({e.reason}): {e.message}", file=sys.stderr)
        return 2
    finally:
        await pool.close()
    print_report(report, key, [line for line, _, _ in rows])
    return 1 if report.refused else 0


def print_report(report: CountReport, key: str, file_lines: list[int]) -> None:
    """The report, each line numbered as in the file (the request numbers its lines 1..n)."""
    from inventory.counts import Outcome

    if report.dry_run:
        print(f"location {report.location_code}: dry run, nothing written")
    else:
        replayed = " (replayed: the saved report of this key)" if report.replayed else ""
        print(f"location {report.location_code}: count {report.count_id}, key {key}{replayed}")
    shown = [ln for ln in report.lines if ln.outcome is not Outcome.MATCHED]
    if shown:
        print(f"{'line':>6}  {'sku':<24} {'counted':>9} {'expected':>9} {'diff':>7}  outcome")
    for ln in shown:
        print(
            f"{file_lines[ln.line - 1]:>6}  {ln.sku:<24} {ln.counted:>9} {ln.expected:>9} "
            f"{ln.difference:>+7}  {ln.outcome.value}"
        )
    print(
        f"matched {report.number(Outcome.MATCHED)}, adjusted {report.number(Outcome.ADJUSTED)}, "
        f"unknown sku {report.number(Outcome.UNKNOWN_SKU)}, below allotted "
        f"{report.number(Outcome.BELOW_ALLOTTED)}, duplicate sku "
        f"{report.number(Outcome.DUPLICATE_SKU)}; units added {report.units_added}, "
        f"removed {report.units_removed}"
    )
