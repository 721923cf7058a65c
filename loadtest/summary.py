"""The figures a run is judged by, read from Locust's `*_stats.csv` and the audit.

Pure: the orchestrator collects the inputs (Locust's CSV, the campaigns' counters from the
API, the audit's verdict) and this module turns them into one summary, its text and its
pass/fail decision, so the arithmetic is unit-tested without running a surge.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from loadtest.outcomes import TRANSIENT_PREFIX

_CODE_NAMES = frozenset(code.name for code in grpc.StatusCode)
# repr() of an UnexpectedOutcome, whose message starts with the status code.
_UNEXPECTED = re.compile(r"UnexpectedOutcome\(['\"]([A-Z_]+)[ :']")


@dataclass(frozen=True)
class Row:
    """One line of Locust's stats CSV."""

    type: str
    name: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True)
class CampaignFigures:
    key: str
    allotted: int
    committed: int
    held: int  # waiting for payment (or in flight, if the run did not settle)


@dataclass
class Summary:
    profile: str
    chaos: bool
    wall_s: float
    attempts: int = 0  # Redeem calls, every answer included
    redeemed: int = 0  # fresh OK answers
    replayed: int = 0  # OK answers to a resent key
    refusals: dict[str, int] = field(default_factory=dict)  # "Method:REASON" -> count
    transient: dict[str, int] = field(default_factory=dict)  # "Method:CODE" -> count
    requests: int = 0
    failures: int = 0
    # Unexpected answers by status code: CANCELLED is called out (a sale's opening used to
    # see dozens), so a run shows "cancelled 0" rather than leaving it to be inferred.
    unexpected_codes: dict[str, int] = field(default_factory=dict)
    rps: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    redeem_p50: float = 0.0
    redeem_p95: float = 0.0
    redeem_p99: float = 0.0
    campaigns: list[CampaignFigures] = field(default_factory=list)
    audit_ok: bool = False
    audit_violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. what the chaos run did
    problems: list[str] = field(default_factory=list)  # why the run failed, if it did

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def committed_units(self) -> int:
        return sum(c.committed for c in self.campaigns)

    @property
    def passed(self) -> bool:
        return not self.problems


def read_stats(path: Path) -> list[Row]:
    def number(value: str) -> float:
        return float(value) if value not in ("", "N/A") else 0.0

    with path.open(newline="") as f:
        return [
            Row(
                type=line["Type"],
                name=line["Name"],
                requests=int(line["Request Count"]),
                failures=int(line["Failure Count"]),
                rps=number(line["Requests/s"]),
                p50=number(line["50%"]),
                p95=number(line["95%"]),
                p99=number(line["99%"]),
            )
            for line in csv.DictReader(f)
        ]


def read_failure_codes(path: Path) -> dict[str, int]:
    """Unexpected answers by status code, from Locust's failures CSV, whose `Error` column
    holds the UnexpectedOutcome (its message starts with the code), or another exception."""
    codes: Counter[str] = Counter()
    with path.open(newline="") as f:
        for line in csv.DictReader(f):
            found = _UNEXPECTED.match(line["Error"])
            code = found.group(1) if found and found.group(1) in _CODE_NAMES else "other"
            codes[code] += int(line["Occurrences"])
    return dict(codes)


def summarize(summary: Summary, rows: Iterable[Row]) -> Summary:
    """Fills the request figures of `summary` from Locust's rows (request names follow
    loadtest.outcomes: `Method`, `Method:replayed`, `Method:REASON`, `Method:transient-CODE`)."""
    for row in rows:
        if row.name == "Aggregated":
            summary.requests, summary.failures, summary.rps = row.requests, row.failures, row.rps
            summary.p50, summary.p95, summary.p99 = row.p50, row.p95, row.p99
            continue
        if row.type != "grpc":
            continue
        method, _, outcome = row.name.partition(":")
        if method == "Redeem":
            summary.attempts += row.requests
            if not outcome:
                summary.redeemed += row.requests - row.failures
                summary.redeem_p50, summary.redeem_p95 = row.p50, row.p95
                summary.redeem_p99 = row.p99
        if outcome == "replayed":
            summary.replayed += row.requests if method == "Redeem" else 0
        elif outcome.startswith(TRANSIENT_PREFIX):
            code = outcome.removeprefix(TRANSIENT_PREFIX)
            summary.transient[f"{method}:{code}"] = row.requests
        elif outcome:
            summary.refusals[f"{method}:{outcome}"] = row.requests
    return summary


def judge(summary: Summary, *, max_failure_ratio: float) -> Summary:
    """A run fails on any audit violation, too many unexpected outcomes, or a run that
    redeemed nothing at all (which would prove nothing)."""
    if not summary.audit_ok:
        summary.problems.append(f"audit failed ({len(summary.audit_violations)} violation(s))")
    if summary.failure_ratio > max_failure_ratio:
        summary.problems.append(
            f"unexpected outcomes {summary.failure_ratio:.2%} > {max_failure_ratio:.2%}"
        )
    if summary.redeemed == 0:
        summary.problems.append("no redemption succeeded")
    cancelled = summary.unexpected_codes.get("CANCELLED", 0)
    if cancelled and not summary.chaos:  # a killed server may leave calls cut short
        summary.problems.append(f"{cancelled} call(s) came back CANCELLED")
    return summary


def render(summary: Summary) -> str:
    """The summary as plain text for a terminal or a CI log."""
    by_reason = ", ".join(f"{k} {v}" for k, v in sorted(summary.refusals.items())) or "none"
    transient = ", ".join(f"{k} {v}" for k, v in sorted(summary.transient.items())) or "none"
    lines = [
        f"Surge load test: profile {summary.profile}" + (" + chaos" if summary.chaos else ""),
        f"  wall time          {summary.wall_s:.0f} s",
        f"  redeem attempts    {summary.attempts}  (OK {summary.redeemed}, "
        f"replayed {summary.replayed})",
        f"  committed units    {summary.committed_units}  ("
        + ", ".join(
            f"{c.key} {c.committed}/{c.allotted}" + (f" +{c.held} pending" if c.held else "")
            for c in summary.campaigns
        )
        + ")",
        f"  refusals           {by_reason}",
        f"  transient, retried {transient}",
        f"  requests           {summary.requests} at {summary.rps:.0f} RPS, "
        f"unexpected {summary.failures} ({summary.failure_ratio:.2%}), "
        f"cancelled {summary.unexpected_codes.get('CANCELLED', 0)}"
        + "".join(
            f", {code} {n}"
            for code, n in sorted(summary.unexpected_codes.items())
            if code != "CANCELLED"
        ),
        f"  latency all        p50 {summary.p50:.0f} ms, p95 {summary.p95:.0f} ms, "
        f"p99 {summary.p99:.0f} ms",
        f"  latency Redeem OK  p50 {summary.redeem_p50:.0f} ms, p95 {summary.redeem_p95:.0f} "
        f"ms, p99 {summary.redeem_p99:.0f} ms",
    ]
    lines += [f"  note               {n}" for n in summary.notes]
    verdict = "OK" if summary.audit_ok else f"{len(summary.audit_violations)} violation(s)"
    lines.append(f"  audit              {verdict}")
    lines += [f"    {v}" for v in summary.audit_violations[:20]]
    lines.append("PASS" if summary.passed else "FAIL: " + "; ".join(summary.problems))
    return "\n".join(lines)
