"""The liability report for finance: what members hold, when it expires, and how points
flowed (issued, redeemed, expired, reversed, adjusted, transferred) per day or month.

Everything comes from the lots and the ledger, in UTC. The breakage estimate is the naive
one: outstanding points x (1 - the range's redemption rate), where the redemption rate is
redeemed / (issued - reversed); a finance team with cohort data should refine it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from common.errors import InvalidArgument
from points.program import add_months, utc_now

GRANULARITIES = ("day", "month")
_MAX_PERIODS = {"day": 366, "month": 120}


@dataclass(frozen=True)
class Flows:
    period_start: datetime | None = None
    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    reversed: int = 0
    adjusted: int = 0
    transferred: int = 0


@dataclass(frozen=True)
class LiabilityReport:
    as_of: datetime
    outstanding: int
    by_expiry_month: list[tuple[str, int]]
    debt: int
    periods: list[Flows]
    totals: Flows
    redemption_rate: float
    breakage_estimate: int
    extra: dict[str, int] = field(default_factory=dict)
    # Purchase points credited as pending (points/pending.py): a liability to come, not in
    # outstanding (nor in any balance) until activated.
    pending: int = 0
    next_pending_activation: datetime | None = None


def period_starts(start: datetime, end: datetime, granularity: str) -> list[datetime]:
    """Starts of the UTC days or months that overlap [start, end)."""
    at = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "month":
        at = at.replace(day=1)
    starts: list[datetime] = []
    while at < end:
        starts.append(at)
        if len(starts) > _MAX_PERIODS[granularity]:
            raise InvalidArgument(
                "end_time", f"the range holds more than {_MAX_PERIODS[granularity]} periods"
            )
        at = at + timedelta(days=1) if granularity == "day" else add_months(at, 1)
    return starts


async def liability_report(
    pool: AsyncConnectionPool,
    *,
    start: datetime,
    end: datetime,
    granularity: str = "month",
    now: datetime | None = None,
) -> LiabilityReport:
    if granularity not in GRANULARITIES:
        raise InvalidArgument("granularity", "must be day or month")
    if end <= start:
        raise InvalidArgument("end_time", "must be after start_time")
    now = now or utc_now()
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    starts = period_starts(start, end, granularity)
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT b.month, b.points FROM ("
            " SELECT coalesce(to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM'), 'never') AS month,"
            " sum(remaining) AS points FROM point_lots WHERE remaining > 0 GROUP BY 1"
            ") b ORDER BY b.month = 'never', b.month"
        )
        buckets = [(r["month"], int(r["points"])) for r in await cur.fetchall()]
        await cur.execute(
            "SELECT coalesce(sum(points_balance), 0) AS balance, "
            "coalesce(sum(points_debt), 0) AS debt FROM members"
        )
        held = await cur.fetchone()
        assert held is not None
        await cur.execute(
            "SELECT coalesce(sum(points - reversed_points), 0) AS points, "
            "min(pending_until) FILTER (WHERE points > reversed_points) AS next "
            "FROM purchases WHERE pending_until IS NOT NULL AND activated_at IS NULL"
        )
        pending = await cur.fetchone()
        assert pending is not None
        await cur.execute(
            "SELECT date_trunc(%s, created_at AT TIME ZONE 'UTC') AS period, "
            "coalesce(sum(amount) FILTER (WHERE kind = 'earn'), 0) AS issued, "
            "coalesce(-sum(amount) FILTER (WHERE kind IN ('redeem', 'refund')), 0) AS redeemed, "
            "coalesce(-sum(amount) FILTER (WHERE kind = 'expire'), 0) AS expired, "
            "coalesce(-sum(amount) FILTER (WHERE kind = 'reversal'), 0) AS reversed, "
            "coalesce(sum(amount) FILTER (WHERE kind = 'adjust'), 0) AS adjusted, "
            "coalesce(sum(amount) FILTER (WHERE kind = 'transfer' AND amount > 0), 0) "
            "AS transferred "
            "FROM ledger_entries WHERE created_at >= %s AND created_at < %s GROUP BY 1",
            (granularity, start, end),
        )
        rows = {r["period"]: r for r in await cur.fetchall()}
    periods = []
    for at in starts:
        r = rows.get(at.replace(tzinfo=None))
        periods.append(
            Flows(at)
            if r is None
            else Flows(
                at,
                int(r["issued"]),
                int(r["redeemed"]),
                int(r["expired"]),
                int(r["reversed"]),
                int(r["adjusted"]),
                int(r["transferred"]),
            )
        )
    totals = Flows(
        None,
        sum(p.issued for p in periods),
        sum(p.redeemed for p in periods),
        sum(p.expired for p in periods),
        sum(p.reversed for p in periods),
        sum(p.adjusted for p in periods),
        sum(p.transferred for p in periods),
    )
    base = totals.issued - totals.reversed
    rate = min(1.0, max(0.0, totals.redeemed / base)) if base > 0 else 0.0
    outstanding = sum(points for _, points in buckets)
    return LiabilityReport(
        as_of=now,
        outstanding=outstanding,
        by_expiry_month=buckets,
        debt=int(held["debt"]),
        periods=periods,
        totals=totals,
        redemption_rate=rate,
        breakage_estimate=round(outstanding * (1 - rate)),
        extra={"balances": int(held["balance"])},
        pending=int(pending["points"]),
        next_pending_activation=pending["next"],
    )
