"""`surge codes import`: loads a code-pool item's codes from a file, straight into
PostgreSQL (like `surge audit-log`), through the same checks as CodeService.ImportCodes.

    surge codes import --item ITEM_ID FILE.csv

One code a line: the first CSV field of each line (a quoted field may hold a comma). Every
line is sent, an empty one too, so a rejected line's number is the file's line number. Each
bad line is rejected with its reason (EMPTY, TOO_LONG, NOT_PRINTABLE, DUPLICATE_IN_FILE,
ALREADY_LOADED) and the rest are loaded, in one transaction. The audit trail records the
change under the subject `cli:<os user>` (--subject to name someone else).

Prints the counts and the rejected lines (the first 100); exits 0 when the upload ran (with
or without rejected lines), 2 when it was refused as a whole (unknown item, not a pool item,
an unreadable file, too many codes): then nothing was loaded.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    """Adds `codes` and its subcommands to the `surge` subcommands."""
    codes: argparse.ArgumentParser = sub.add_parser("codes", help="code pools of virtual items")
    actions = codes.add_subparsers(dest="codes_command", required=True)
    load = actions.add_parser("import", help="load a code-pool item's codes from a file")
    load.add_argument("--item", required=True, help="the item's id (a CODE_SOURCE_POOL item)")
    load.add_argument("file", type=Path, help="one code a line (the first CSV field)")
    load.add_argument(
        "--subject", default="", help="who loads them, for the audit trail (cli:<os user>)"
    )


def read_codes(path: Path) -> list[str]:
    """The first field of every line, in order (an empty line gives "")."""
    with path.open(newline="", encoding="utf-8") as f:
        return [row[0] if row else "" for row in csv.reader(f)]


async def run(args: argparse.Namespace, database_url: str) -> int:
    from psycopg_pool import AsyncConnectionPool

    from common.actor import Actor, acting_as
    from common.errors import DomainError
    from inventory.codes import CodePools

    try:
        codes = read_codes(args.file)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        print(f"cannot read {args.file}: {e}", file=sys.stderr)
        return 2
    subject = args.subject or f"cli:{getpass.getuser()}"
    pool = AsyncConnectionPool(
        database_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    try:
        with acting_as(Actor(subject, "cli")):
            imported = await CodePools(pool).import_codes(args.item, codes)
    except DomainError as e:
        print(f"refused ({e.reason}): {e.message}", file=sys.stderr)
        return 2
    finally:
        await pool.close()
    print(
        f"item {imported.item_id}: loaded {imported.loaded}, rejected {imported.rejected}, "
        f"available now {imported.remaining}"
    )
    for rejected in imported.rejected_lines:
        print(f"line {rejected.line}: {rejected.reason.value}")
    if imported.rejected > len(imported.rejected_lines):
        print(f"... and {imported.rejected - len(imported.rejected_lines)} more rejected lines")
    return 0
