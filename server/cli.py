"""The `surge` command: serve, migrate, rebuild-cache, audit, audit-log (server/cli_audit_log.py),
codes import (server/cli_codes.py), events tail (server/cli_events.py), stock count
(server/cli_stock.py), the points ledger's jobs and liability report (server/cli_points.py),
the local stack, and development tokens."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from common.dependencies import failure_of
from common.metrics import build_versions
from server import cli_audit_log, cli_codes, cli_events, cli_points, cli_stock, scopes
from server.config import ConfigError, Settings
from server.credentials import SUBJECT_MAX, dev_secret, mint
from server.embedded import EmbeddedError, ForeignStack, LocalStack
from server.startup import StartupError, wait_for_stores

if TYPE_CHECKING:
    from server.app import Stores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="surge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"surge {build_versions()[0]}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="migrate, then serve gRPC until SIGTERM/SIGINT")
    sub.add_parser("migrate", help="apply database migrations, then changed SQL function files")
    sub.add_parser(
        "rebuild-cache", help="rebuild Redis from PostgreSQL (never overwrites live counters)"
    )
    audit = sub.add_parser("audit", help="check every invariant over PostgreSQL and Redis")
    audit.add_argument(
        "--settled", action="store_true", help="traffic has stopped: expect no holds"
    )
    audit.add_argument(
        "--recorded",
        nargs="+",
        type=Path,
        default=[],
        metavar="PATH",
        help="OKs clients received (JSON lines, or a folder of *.jsonl): each must exist "
        "in PostgreSQL exactly once",
    )
    cli_audit_log.add_parser(sub)
    cli_codes.add_parser(sub)
    cli_events.add_parser(sub)
    cli_stock.add_parser(sub)
    cli_points.add_parser(sub)
    stack = sub.add_parser("stack", help="the local Redis + PostgreSQL of the embedded default")
    stack.add_argument("action", choices=["start", "stop", "urls"])
    token = sub.add_parser(
        "token",
        help="print a bearer token signed with the HS256 secret (SURGE_JWT_SECRET[_FILE], "
        "or the embedded default's development secret)",
    )
    token.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        required=True,
        choices=[*scopes.ALL, "all"],
        help="repeat for several; 'all' for every scope",
    )
    token.add_argument("--subject", default=f"cli:{getpass.getuser()}", help="the `sub` claim")
    token.add_argument(
        "--ttl-seconds", type=int, default=3600, help="lifetime, 60..2592000 (30 days)"
    )
    args = parser.parse_args(argv)

    try:
        settings = Settings.load()
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    from server.logs import setup_logging

    setup_logging(settings.log_level, json_lines=settings.log_json)
    # Whatever stops a command is one line on stderr and an exit code, never a traceback:
    # 2 for what the operator must fix in the configuration or the command line, 1 for a
    # store that cannot be reached (or started).
    try:
        return _run(args, settings)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    except NoStores as e:
        print(f"surge {args.command}: {e}", file=sys.stderr)
        return 2
    except ForeignStack as e:
        print(f"embedded stack: {e}", file=sys.stderr)
        return 2
    except (StartupError, EmbeddedError) as e:
        print(f"surge {args.command}: {_first_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:
        failure = failure_of(e)
        if failure is None:
            raise  # a bug: its traceback is what someone needs
        print(
            f"surge {args.command}: {failure.dependency} {failure.condition}: {_first_line(e)}",
            file=sys.stderr,
        )
        return 1


class NoStores(Exception):
    """A command that needs the stores has neither URLs nor a running embedded stack."""


def _run(args: argparse.Namespace, settings: Settings) -> int:
    local = LocalStack(
        settings.data_dir.resolve(), settings.embedded_redis_port, settings.embedded_postgres_port
    )
    settings = _with_dev_secret(settings)
    if args.command == "token":
        return _token(settings, args.scopes, args.subject, args.ttl_seconds)
    if args.command == "stack":
        return _stack(local, args.action)

    if args.command == "serve" and settings.auth == "JWT":
        settings.jwt_keys()  # a missing or bad key stops here, before anything runs
    stores = _stores(settings, local, args.command)
    wait_for_stores(stores, settings.startup_timeout_seconds)
    from server.migrate import migrate

    if args.command == "migrate":
        applied = migrate(stores.database_url)
        print("migrations applied: " + (", ".join(applied.migrations) or "none, all recorded"))
        print("functions applied: " + (", ".join(applied.functions) or "none, all unchanged"))
        return 0
    if args.command == "serve":
        migrate(stores.database_url)
        from server.app import serve

        _print_dev_credential(settings)
        # uvloop: measured side by side, the bare gRPC floor spends ~15% less CPU a call
        # under it (docs/performance.md); SURGE_UVLOOP=OFF runs asyncio's own loop.
        import uvloop

        run = uvloop.run if settings.uvloop else asyncio.run
        run(serve(settings, stores))  # a TLS file that cannot be used: ConfigError
        return 0
    if args.command == "rebuild-cache":
        return asyncio.run(_rebuild(settings, stores))
    if args.command == "audit-log":
        return asyncio.run(cli_audit_log.run(args, stores.database_url))
    if args.command == "codes":
        return asyncio.run(cli_codes.run(args, stores.database_url))
    if args.command == "events":
        return asyncio.run(cli_events.run(args, stores.database_url))
    if args.command == "stock":
        return asyncio.run(cli_stock.run(args, stores.database_url))
    if args.command in cli_points.COMMANDS:
        return cli_points.run(args, settings, stores)
    return asyncio.run(_audit(settings, stores, settled=args.settled, recorded=args.recorded))


def _stack(local: LocalStack, action: str) -> int:
    if action == "start":
        local.start()
        print(f"embedded stack of {local.data_dir} running", file=sys.stderr)
    elif action == "stop":
        stopped = local.stop()
        print(
            f"stopped {' and '.join(stopped)} of {local.data_dir}"
            if stopped
            else f"nothing was running for {local.data_dir}"
        )
        return 0
    print(f"REDIS_URL={local.redis_url}\nDATABASE_URL={local.database_url}")
    return 0


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def _embedded(settings: Settings) -> bool:
    return settings.database_url is None or settings.redis_url is None


def _with_dev_secret(settings: Settings) -> Settings:
    """The embedded default checks credentials too, with a development secret made under
    the data folder, so its first call is still copy-paste (`surge token`). Anywhere else a
    missing key is a configuration error at start."""
    if settings.auth != "JWT" or settings.has_jwt_keys or not _embedded(settings):
        return settings
    return replace(settings, jwt_secret=dev_secret(settings.data_dir.resolve()))


def _token(settings: Settings, wanted: list[str], subject: str, ttl_s: int) -> int:
    if settings.jwt_secret is None:
        print(
            "surge token signs with an HS256 secret: set SURGE_JWT_SECRET_FILE (or run it "
            "where the embedded default runs); with SURGE_JWT_JWKS_FILE only, tokens come "
            "from your identity provider",
            file=sys.stderr,
        )
        return 2
    if not 60 <= ttl_s <= 30 * 86_400:
        print("--ttl-seconds must be between 60 and 2592000", file=sys.stderr)
        return 2
    if not subject.strip() or len(subject) > SUBJECT_MAX:
        print(f"--subject must be 1..{SUBJECT_MAX} characters", file=sys.stderr)
        return 2
    chosen = scopes.ALL if "all" in wanted else wanted
    print(
        mint(
            settings.jwt_secret,
            subject=subject,
            scopes=chosen,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            ttl_s=ttl_s,
        )
    )
    return 0


def _print_dev_credential(settings: Settings) -> None:
    """On the embedded default only: a token with every scope, on the terminal (never in
    the log), and how to use it."""
    if settings.auth != "JWT" or not _embedded(settings) or settings.jwt_secret is None:
        return
    dev = mint(
        settings.jwt_secret,
        subject="dev",
        scopes=scopes.ALL,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        ttl_s=12 * 3600,
    )
    print(
        "Development credential (every scope, 12 h; `surge token --help` makes others):\n"
        f"  export SURGE_TOKEN={dev}\n"
        f'  grpcurl -plaintext -H "authorization: Bearer $SURGE_TOKEN" '
        f"{settings.grpc_address} list\n",
        file=sys.stderr,
        flush=True,
    )


def _stores(settings: Settings, local: LocalStack, command: str) -> Stores:
    """The URLs, or the embedded stack for whichever is unset: `surge serve` starts it
    (the embedded default of `make run`), every other command attaches to a running stack
    of the same SURGE_DATA_DIR, or refuses: an audit or a migration must never run against
    a stack it started empty by mistake."""
    from server.app import Stores

    if settings.database_url is None or settings.redis_url is None:
        if command == "serve":
            local.start()
        elif not local.running():
            raise NoStores(
                "set REDIS_URL and DATABASE_URL, or start the embedded stack of "
                f"SURGE_DATA_DIR={local.data_dir} first (`surge stack start` or `make run`)"
            )
        else:
            logging.getLogger(__name__).info(
                "using the running embedded stack of %s", local.data_dir
            )
    return Stores(
        database_url=settings.database_url or local.database_url,
        redis_url=settings.redis_url or local.redis_url,
    )


async def _rebuild(settings: Settings, stores: Stores) -> int:
    from flashsale.rebuild import rebuild_cache
    from server.app import App

    app = App(settings, stores)
    await app.pool.open(wait=True)
    try:
        report = await rebuild_cache(
            app.pool,
            app.campaigns,
            app.points_gate,
            ended_within=timedelta(seconds=settings.payment_window_seconds + 3600),
        )
        lotteries = await app.lotteries.load_all_into_gate()  # set-if-absent, lottery/load.lua
    finally:
        await app.redis.aclose()
        await app.pool.close()
    print(
        f"campaigns created {report.campaigns_created}, refreshed {report.campaigns_refreshed}; "
        f"members {report.members}; lotteries loaded {lotteries}"
    )
    return 0


async def _audit(
    settings: Settings, stores: Stores, *, settled: bool, recorded: Sequence[Path] = ()
) -> int:
    from flashsale.audit import audit, check_recorded, load_recorded
    from server.app import App

    try:
        records = load_recorded(recorded)
    except (OSError, ValueError) as e:
        print(f"cannot read recorded OKs: {e}", file=sys.stderr)
        return 2
    app = App(settings, stores)
    await app.pool.open(wait=True)
    try:
        stuck_ms = int((settings.sweep_interval_seconds + settings.commit_fence_seconds) * 1000)
        report = await audit(app.pool, app.redis, settled=settled, stuck_after_ms=stuck_ms)
        if recorded:
            for violation in await check_recorded(app.pool, records):
                report.fail(violation)
    finally:
        await app.redis.aclose()
        await app.pool.close()
    print(
        f"campaigns {report.campaigns}, members {report.members}, redemptions "
        f"{report.redemptions}, units committed {report.units_committed}"
    )
    if recorded:
        keys = len({(r.member_id, r.idempotency_key) for r in records})
        print(f"recorded OKs {len(records)} (for {keys} keys) checked against PostgreSQL")
    for violation in report.violations:
        print(f"VIOLATION: {violation}")
    print("audit: " + ("OK" if report.ok else f"{len(report.violations)} violation(s)"))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
