"""The liability report, over gRPC and from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from loyalty.v1 import member_pb2
from points.jobs import LedgerJobs
from server.app import Stores
from tests.cli import surge
from tests.conftest import Running
from tests.factories import failure, key, ts
from tests.points.helpers import earn, set_lot_expiry


def report_request(
    start: datetime,
    end: datetime,
    granularity: member_pb2.ReportGranularity.ValueType = member_pb2.REPORT_GRANULARITY_MONTH,
) -> member_pb2.GetLiabilityReportRequest:
    return member_pb2.GetLiabilityReportRequest(
        start_time=ts(start), end_time=ts(end), granularity=granularity
    )


async def test_outstanding_by_expiry_month_and_flows(server: Running) -> None:
    api = server.api
    a, b = await api.member(), await api.member()
    old = await earn(server, a.id, 1_000)
    await earn(server, a.id, 500)
    await api.members.EarnForPurchase(
        member_pb2.EarnForPurchaseRequest(member_id=b.id, amount_cents=30_000, event_id="o")
    )
    await api.members.ReversePurchase(
        member_pb2.ReversePurchaseRequest(
            member_id=b.id, purchase_event_id="o", amount_cents=10_000, event_id="r"
        )
    )
    await api.members.AdjustPoints(
        member_pb2.AdjustPointsRequest(
            member_id=b.id, delta=-50, reason="fix", operator_id="op", idempotency_key=key()
        )
    )
    campaign = await api.campaign(points_price=200)
    await api.redeem(a.id, campaign.id)
    await api.members.AddBeneficiary(
        member_pb2.AddBeneficiaryRequest(member_id=a.id, beneficiary_id=b.id)
    )
    await api.members.TransferPoints(
        member_pb2.TransferPointsRequest(
            from_member_id=a.id, to_member_id=b.id, points=100, idempotency_key=key()
        )
    )
    now = datetime.now(UTC)
    await set_lot_expiry(server, a.id, f"earn:{old}", now - timedelta(seconds=1))
    await LedgerJobs(server.app.pool, server.app.points).run_once(evaluate_tiers=False)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)

    report = await api.members.GetLiabilityReport(
        report_request(month - timedelta(days=1), now + timedelta(days=1))
    )
    day_from, day_to = now - timedelta(days=2), now + timedelta(hours=1)
    daily = await api.members.GetLiabilityReport(
        report_request(day_from, day_to, member_pb2.REPORT_GRANULARITY_DAY)
    )

    # a: the old lot (soonest expiry) paid the 200 redeemed and the 100 transferred, then
    # its 700 left expired: 500 remain. b: 300 - 100 reversed - 50 adjusted + 100 = 250.
    assert report.outstanding_points == 750
    assert sum(x.points for x in report.outstanding_by_expiry) == 750
    assert [x.expiry_month for x in report.outstanding_by_expiry] == sorted(
        x.expiry_month for x in report.outstanding_by_expiry
    )
    t = report.totals
    assert (t.issued, t.redeemed, t.expired, t.reversed, t.adjusted, t.transferred) == (
        1_800,
        200,
        700,
        100,
        -50,
        100,
    )
    assert len(report.periods) == 2 and report.periods[0].issued == 0
    assert report.redemption_rate == pytest.approx(200 / 1_700)
    assert report.breakage_estimate_points == round(750 * (1 - 200 / 1_700))
    # One period per UTC day the window touches: 3, or 4 when now + 1 h is past midnight.
    days = (day_to.date() - day_from.date()).days + 1
    assert len(daily.periods) == days and daily.totals.issued == 1_800


async def test_liability_report_errors(server: Running) -> None:
    now = datetime.now(UTC)
    for request, field in (
        (report_request(now, now - timedelta(days=1)), "end_time"),
        (member_pb2.GetLiabilityReportRequest(end_time=ts(now)), "start_time"),
        (
            report_request(now - timedelta(days=400), now, member_pb2.REPORT_GRANULARITY_DAY),
            "end_time",
        ),
        (report_request(now - timedelta(days=1), now, 9), "granularity"),  # type: ignore[arg-type]
    ):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await server.api.members.GetLiabilityReport(request)
        assert (failure(bad.value).code, failure(bad.value).field) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            field,
        )


def test_the_cli_runs_the_expiry_job_and_prints_the_report(clean: Stores) -> None:
    expired = surge(clean, "expire-points")
    table = surge(clean, "liability-report", "--from", "2026-01-01", "--to", "2026-03-01")
    as_json = surge(
        clean,
        "liability-report",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-03",
        "--granularity",
        "day",
        "--json",
    )
    bad = surge(clean, "liability-report", "--from", "2026-13-01", "--to", "2026-03-01")

    assert expired.returncode == 0, expired.stderr
    assert "expired 0 points of 0 members" in expired.stdout
    assert table.returncode == 0, table.stderr
    assert "2026-01" in table.stdout and "2026-02" in table.stdout and "total" in table.stdout
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert len(report["periods"]) == 2
    # The API's field names (GetLiabilityReport's response), not the domain's; a message
    # field is left out when unset (no pending points: no next activation).
    names = {f.name for f in member_pb2.LiabilityReport.DESCRIPTOR.fields}
    assert set(report) == names - {"next_pending_activation"}
    assert report["pending_points"] == "0"
    assert bad.returncode == 2
