"""What `make bench-scale` prints and checks: the ratios large/small, the correctness
problems (which fail the run; the ratios never do), and the table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bench.loadgen import OK, SOLD_OUT

TARGET_RATIO = 0.9  # the large set within 10% of the small set's throughput


def _ratio(large: float | None, small: float | None) -> float | None:
    return large / small if large is not None and small else None


def ratios(small: dict[str, Any], large: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for load in ("success", "sold_out"):
        for field in ("per_second", "p99_ms"):
            out[f"{load}_{field}"] = _ratio(large[load][field], small[load][field])
        out[f"{load}_server_cpu_us"] = _ratio(
            large[load]["cpu_us_per_call"]["surge"], small[load]["cpu_us_per_call"]["surge"]
        )
    out["redis_bytes_per_member"] = _ratio(
        large["redis"]["bytes_per_member"], small["redis"]["bytes_per_member"]
    )
    out["redis_bytes_per_campaign"] = _ratio(
        large["redis"]["bytes_per_campaign"], small["redis"]["bytes_per_campaign"]
    )
    out["pg_bytes_per_redemption"] = _ratio(
        large["postgresql"]["bytes_per_redemption"], small["postgresql"]["bytes_per_redemption"]
    )
    return out


def problems(sets: dict[str, dict[str, Any]]) -> list[str]:
    found = []
    for name, s in sets.items():
        if s["probe"] != OK:
            found.append(
                f"{name}: a cloned member could not redeem a cloned campaign: {s['probe']}"
            )
        if not s["audit"]["ok"]:
            found += [f"{name}: audit: {v}" for v in s["audit"]["violations"]]
        for load, expected in (("success", OK), ("sold_out", SOLD_OUT)):
            other = {k: n for k, n in s[load]["outcomes"].items() if k != expected}
            if other:
                found.append(f"{name}: {load} load answered {other}")
        sweep = s.get("sweeper")
        if sweep and (sweep["released"] != sweep["holds"] or sweep["holds_in_flight_after"]):
            found.append(f"{name}: sweeper released {sweep['released']} of {sweep['holds']}")
        if sweep and (sweep["units_in_flight_after"] or sweep["points_held_after"]):
            found.append(f"{name}: units or points still held after the sweep: {sweep}")
    return found


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def print_report(sets: dict[str, dict[str, Any]], found: dict[str, Any], console: Console) -> None:
    small, large = sets["small"], sets["large"]
    table = Table(title="Cost as the work grows: small vs large data set")
    table.add_column("measure")
    table.add_column("small", justify="right")
    table.add_column("large", justify="right")
    table.add_column("large/small", justify="right")

    def row(label: str, pick: Any, ratio: float | None = None, digits: int = 1) -> None:
        table.add_row(label, _fmt(pick(small), digits), _fmt(pick(large), digits), _fmt(ratio, 2))

    r = found["ratios"]
    row("members", lambda s: s["members"])
    row("campaigns", lambda s: s["campaigns"])
    for phase in ("copy_campaigns", "rebuild_campaigns", "copy_members", "rebuild_all"):
        row(f"{phase.replace('_', ' ')}, s", lambda s, p=phase: s["phases_s"][p])
    for load, label in (("success", "success path"), ("sold_out", "sold out")):
        row(f"{label}: per s", lambda s, x=load: s[x]["per_second"], r[f"{load}_per_second"], 0)
        row(f"{label}: p99 ms", lambda s, x=load: s[x]["p99_ms"], r[f"{load}_p99_ms"])
        row(
            f"{label}: server CPU µs/call",
            lambda s, x=load: s[x]["cpu_us_per_call"]["surge"],
            r[f"{load}_server_cpu_us"],
        )
    row("Redis bytes/member", lambda s: s["redis"]["bytes_per_member"], r["redis_bytes_per_member"])
    row("Redis keys/member", lambda s: s["redis"]["keys_per_member"], None, 2)
    row(
        "Redis bytes/campaign",
        lambda s: s["redis"]["bytes_per_campaign"],
        r["redis_bytes_per_campaign"],
    )
    row("Redis keys/campaign", lambda s: s["redis"]["keys_per_campaign"], None, 2)
    row(
        "PostgreSQL bytes/redemption",
        lambda s: s["postgresql"]["bytes_per_redemption"],
        r["pg_bytes_per_redemption"],
    )
    row("audit, s", lambda s: s["audit"]["seconds"])
    console.print(table)
    sweep = large.get("sweeper")
    if sweep:
        console.print(
            f"sweeper: {sweep['holds']:,} lapsed holds (made in {sweep['create_s']:.1f}s) released "
            f"in {sweep['sweep_s']:.1f}s over {sweep['passes']} passes: "
            f"{sweep['released_per_s']:,.0f} holds/s; after: {sweep['holds_in_flight_after']} "
            f"holds, {sweep['units_in_flight_after']} units, {sweep['points_held_after']} points held"
        )
    target = found["target"]
    console.print(
        f"target (reported, not asserted): large success path >= {TARGET_RATIO:.0%} of small: "
        f"{'met' if target['met'] else 'not met'} ({_fmt(target['success_ratio'], 2)})"
    )
