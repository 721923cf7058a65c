"""The run's figures from Locust's CSV, and when a run fails."""

from __future__ import annotations

from pathlib import Path

from loadtest.summary import (
    CampaignFigures,
    Summary,
    judge,
    read_failure_codes,
    read_stats,
    render,
    summarize,
)

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)


def _row(kind: str, name: str, n: int, failures: int, rps: float, p: tuple[int, ...]) -> str:
    p50, p95, p99 = p
    return (
        f"{kind},{name},{n},{failures},{p50},1.0,1,9,10,{rps},0.0,"
        f"{p50},{p50},{p50},{p50},{p95},{p95},{p99},{p99},{p99},{p99},{p99}"
    )


def _stats(tmp_path: Path) -> Path:
    lines = [
        HEADER,
        _row("grpc", "GetBalance", 100, 0, 10, (2, 5, 9)),
        _row("grpc", "Redeem", 210, 10, 20, (40, 90, 120)),
        _row("grpc", "Redeem:replayed", 30, 0, 3, (5, 9, 12)),
        _row("grpc", "Redeem:SOLD_OUT", 900, 0, 90, (3, 6, 8)),
        _row("grpc", "Redeem:LIMIT_EXCEEDED", 50, 0, 5, (3, 6, 8)),
        _row("grpc", "Redeem:transient-UNAVAILABLE", 7, 0, 1, (1, 2, 3)),
        _row("grpc", "ConfirmPayment:PAYMENT_WINDOW_CLOSED", 1, 0, 0.1, (5, 5, 5)),
        _row("check", "Redeem replay", 2, 2, 0.2, (0, 0, 0)),
        _row("", "Aggregated", 1300, 12, 130.5, (4, 80, 110)),
    ]
    path = tmp_path / "locust_stats.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_figures_come_from_the_request_names(tmp_path: Path) -> None:
    s = summarize(Summary("ci", False, 60.0), read_stats(_stats(tmp_path)))

    assert (s.attempts, s.redeemed, s.replayed) == (210 + 30 + 900 + 50 + 7, 200, 30)
    assert s.refusals == {
        "Redeem:SOLD_OUT": 900,
        "Redeem:LIMIT_EXCEEDED": 50,
        "ConfirmPayment:PAYMENT_WINDOW_CLOSED": 1,
    }
    assert s.transient == {"Redeem:UNAVAILABLE": 7}
    assert (s.requests, s.failures, s.rps) == (1300, 12, 130.5)
    assert (s.p50, s.p95, s.p99) == (4, 80, 110)
    assert (s.redeem_p50, s.redeem_p95, s.redeem_p99) == (40, 90, 120)


def test_a_run_fails_on_an_audit_violation_or_too_many_unexpected_outcomes(
    tmp_path: Path,
) -> None:
    rows = read_stats(_stats(tmp_path))
    good = summarize(Summary("ci", False, 60.0, audit_ok=True), rows)
    assert judge(good, max_failure_ratio=0.01).passed  # 12 / 1300 < 1%

    strict = summarize(Summary("ci", False, 60.0, audit_ok=True), rows)
    assert not judge(strict, max_failure_ratio=0.005).passed

    violated = summarize(
        Summary("ci", True, 60.0, audit_ok=False, audit_violations=["lost OK"]), rows
    )
    violated.campaigns = [CampaignFigures("hot", 200, 200, 0)]
    judged = judge(violated, max_failure_ratio=0.01)
    assert not judged.passed
    text = render(judged)
    assert "lost OK" in text and "hot 200/200" in text and text.endswith(judged.problems[0])


def test_a_run_that_redeemed_nothing_proves_nothing() -> None:
    assert not judge(Summary("ci", False, 1.0, audit_ok=True), max_failure_ratio=0.01).passed


def test_unexpected_answers_are_counted_by_code_and_cancelled_fails_a_run(
    tmp_path: Path,
) -> None:
    """Locust's failures CSV holds repr() of the error; CANCELLED is named in every report
    (0 included) and fails a run without chaos."""
    failures = tmp_path / "locust_failures.csv"
    failures.write_text(
        "Method,Name,Error,Occurrences,First Seen,Last Seen\n"
        "grpc,Redeem,UnexpectedOutcome('CANCELLED: Locally cancelled by application!'),3,1,2\n"
        "grpc,Redeem,\"UnexpectedOutcome('INTERNAL: internal error (request id x)')\",1,1,2\n"
        "grpc,ConfirmPayment,UnexpectedOutcome('FAILED_PRECONDITION PAYMENT_MISMATCH: no'),2,1,2\n"
        "check,Redeem replay,CheckFailed('first answer was OK'),1,1,2\n"
    )
    codes = read_failure_codes(failures)
    assert codes == {"CANCELLED": 3, "INTERNAL": 1, "FAILED_PRECONDITION": 2, "other": 1}

    rows = read_stats(_stats(tmp_path))
    clean = summarize(Summary("ci", False, 60.0, audit_ok=True), rows)
    assert "cancelled 0" in render(judge(clean, max_failure_ratio=0.01))

    cut_short = summarize(Summary("ci", False, 60.0, audit_ok=True), rows)
    cut_short.unexpected_codes = codes
    judged = judge(cut_short, max_failure_ratio=0.01)
    assert "3 call(s) came back CANCELLED" in judged.problems
    assert "cancelled 3, FAILED_PRECONDITION 2, INTERNAL 1, other 1" in render(judged)

    chaos = summarize(Summary("ci", True, 60.0, audit_ok=True), rows)
    chaos.unexpected_codes = {"CANCELLED": 3}
    assert judge(chaos, max_failure_ratio=0.01).passed
