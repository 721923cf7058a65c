"""`surge expire-points` and `surge liability-report`: the points ledger's jobs by hand and
its liability report (the same figures as MemberService.GetLiabilityReport)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.app import Stores
    from server.config import Settings

COMMANDS = ("expire-points", "liability-report")


def add_parser(sub: Any) -> None:
    sub.add_parser(
        "expire-points",
        help="expire what remains of lots past their expiry now, evaluate tiers if due",
    )
    report = sub.add_parser(
        "liability-report", help="outstanding points by expiry month and flows per period"
    )
    report.add_argument("--from", dest="start", required=True, help="start date, YYYY-MM-DD (UTC)")
    report.add_argument("--to", dest="end", required=True, help="end date, exclusive, YYYY-MM-DD")
    report.add_argument("--granularity", choices=["day", "month"], default="month")
    report.add_argument(
        "--json",
        action="store_true",
        help="print GetLiabilityReport's response (loyalty.v1.LiabilityReport) as proto3 JSON, "
        "with the protos' field names, instead of a table",
    )


def run(args: argparse.Namespace, settings: Settings, stores: Stores) -> int:
    if args.command == "expire-points":
        return asyncio.run(_expire_points(settings, stores))
    try:
        start, end = _date(args.start), _date(args.end)
    except ValueError as e:
        print(f"bad date: {e}", file=sys.stderr)
        return 2
    return asyncio.run(
        _liability(settings, stores, start, end, args.granularity, as_json=args.json)
    )


def _date(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)


async def _expire_points(settings: Settings, stores: Stores) -> int:
    from points.jobs import LedgerJobs
    from server.app import App

    app = App(settings, stores)
    await app.pool.open(wait=True)
    try:
        await app.points_gate.load_scripts()
        report = await LedgerJobs(app.pool, app.points).run_once()
    finally:
        await app.redis.aclose()
        await app.pool.close()
    print(
        f"expired {report.expired_points} points of {report.expired_members} members; "
        f"tiers evaluated: {'yes' if report.tiers_evaluated else 'not due'} "
        f"({report.tier_changes} changes); eligibility changes {report.eligibility_changes}"
    )
    return 0


async def _liability(
    settings: Settings,
    stores: Stores,
    start: datetime,
    end: datetime,
    granularity: str,
    *,
    as_json: bool,
) -> int:
    from common.errors import InvalidArgument
    from points.liability import liability_report
    from server.app import App

    app = App(settings, stores)
    await app.pool.open(wait=True)
    try:
        report = await liability_report(app.pool, start=start, end=end, granularity=granularity)
    except InvalidArgument as e:
        print(f"invalid: {e.message}", file=sys.stderr)
        return 2
    finally:
        await app.redis.aclose()
        await app.pool.close()
    if as_json:
        from server import convert

        # GetLiabilityReport's response, field for field.
        print(convert.to_json(convert.liability_report(report), indent=2))
        return 0
    print(f"as of {report.as_of:%Y-%m-%d %H:%M} UTC")
    print(
        f"outstanding points {report.outstanding}, debt {report.debt}, "
        f"pending points {report.pending} (not in outstanding until activated)"
    )
    for month, points in report.by_expiry_month:
        print(f"  expires {month:>7}  {points:>14}")
    print(
        f"{'period':<10} {'issued':>12} {'redeemed':>12} {'expired':>12} {'reversed':>12} "
        f"{'adjusted':>12} {'transferred':>12}"
    )
    fmt = "%Y-%m-%d" if granularity == "day" else "%Y-%m"
    for p in [*report.periods, report.totals]:
        label = p.period_start.strftime(fmt) if p.period_start else "total"
        print(
            f"{label:<10} {p.issued:>12} {p.redeemed:>12} {p.expired:>12} {p.reversed:>12} "
            f"{p.adjusted:>12} {p.transferred:>12}"
        )
    print(
        f"redemption rate {report.redemption_rate:.4f}; breakage estimate "
        f"{report.breakage_estimate} points"
    )
    return 0
