"""`make bench-cluster`: Surge on one Redis server and on a Redis Cluster, side by side in
one run, and the ceilings the capacity model (docs/capacity.md) is built from.

    python -m bench.cluster --profile quick|full --out results/bench

1. PostgreSQL and one Redis server (server.embedded.LocalStack) and a Redis Cluster of 3
   primaries + 3 replicas (tests/local_cluster.py), on free loopback ports.
2. Two `surge serve` processes on the same PostgreSQL: "server" on the Redis server,
   "cluster" on the cluster; each seeds its own campaigns and members (bench.workloads).
3. The same loads against each, one after the other, alternating: Health/Check (the floor),
   the success path, sold-out refusals and the hot item. Per load: answers/s, p99, and CPU
   per answer of the Surge process, of Redis (every node of the cluster, replicas included)
   and of PostgreSQL.
4. Ceilings, measured after the loads: reserve.lua sent straight to one Redis core by
   redis-benchmark (pipelined, no gRPC in front), on the sold-out path and on the hold path:
   Lua calls/s one Redis primary can take. And from the success-path loads: group commits
   per second and redemptions per commit, from pg_stat_statements.

Figures are reported, never asserted. Exit status 1 when a hot item oversold or an answer
was INTERNAL, 2 when the harness could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import psycopg
import redis
from rich.console import Console
from rich.table import Table

from bench.loadgen import OK, LoadGenerator, LoadSpec, Samples, hot_phases, outcomes, steady
from bench.probes import StatementStats, children, cpu_seconds, pid_from_file
from bench.servers import ROOT, ServerProcess, free_port, local_stack, say
from bench.workloads import PROFILES, Dataset, Profile, seed
from loadtest import credentials
from loadtest.credentials import with_credentials
from server.app import Stores
from server.embedded import LocalStack
from tests.local_cluster import LocalCluster, local_cluster

SYSTEMS = ("server", "cluster")
LUA_CALLS = 200_000  # per redis-benchmark run


@dataclass
class Measured:
    key: str  # floor, redeem, refusal_sold_out, hot
    system: str  # server | cluster
    per_second: float
    p99_ms: float
    answers: int
    cpu_us: dict[str, float]  # process -> CPU µs per answer
    commits: int | None = None  # group commits during the load (pg_stat_statements)
    commit_ms: float = 0.0  # PostgreSQL time those commits took
    oversold: bool = False
    internal: int = 0


def _pids_cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


def _pg_cpu(postmaster: int | None) -> float:
    if postmaster is None:
        return 0.0
    return cpu_seconds(postmaster, with_children=True) + _pids_cpu(children(postmaster))


def _specs(profile: Profile, target: str, data: Dataset, system: str) -> list[tuple[str, LoadSpec]]:
    credential = credentials.metadata()
    base = LoadSpec(
        name="redeem",
        target=target,
        call="redeem",
        concurrency=profile.concurrency,
        warmup_s=profile.warmup_s,
        duration_s=profile.redeem_s,
        campaign_ids=data.success_campaigns,
        member_ids=data.members,
        key_prefix=f"{system}-redeem",
        metadata=credential,
    )
    return [
        ("floor", replace(base, name="floor", call="health", duration_s=profile.floor_s)),
        ("redeem", base),
        (
            "refusal_sold_out",
            replace(
                base,
                name="refusal_sold_out",
                duration_s=profile.refusal_s,
                campaign_ids=(data.sold_out_campaign,),
                key_prefix=f"{system}-soldout",
            ),
        ),
        (
            "hot",
            replace(
                base,
                name="hot",
                concurrency=profile.hot_concurrency,
                warmup_s=0.0,
                duration_s=profile.hot_max_s,
                campaign_ids=(data.hot_campaign,),
                stop_after_sold_out_s=profile.hot_beyond_s,
                key_prefix=f"{system}-hot",
            ),
        ),
    ]


def _measure(
    key: str,
    system: str,
    samples: Samples,
    cpu: dict[str, float],
    commits: tuple[int, float] | None,
    hot_stock: int,
) -> Measured:
    counted = outcomes(samples)
    if key == "hot":
        phases = hot_phases(samples)
        stats = phases.sold if phases.sold.calls else steady(samples)
    elif key == "refusal_sold_out":
        stats = steady(samples, {"SOLD_OUT"})
    elif key == "redeem":
        stats = steady(samples, {OK})
    else:
        stats = steady(samples)
    answers = samples.calls_total or 1
    return Measured(
        key=key,
        system=system,
        per_second=stats.per_second,
        p99_ms=stats.p99_ms,
        answers=samples.calls_total,
        cpu_us={k: v * 1e6 / answers for k, v in cpu.items()},
        commits=commits[0] if commits else None,
        commit_ms=commits[1] if commits else 0.0,
        oversold=key == "hot" and counted[OK] > hot_stock,
        internal=counted["INTERNAL"],
    )


def lua_ceiling(port: int, data: Dataset, console: Console) -> dict[str, float]:
    """reserve.lua straight to one Redis with redis-benchmark: calls/s of one Redis core,
    on the sold-out path (a refusal remembered) and the hold path (a new hold each call)."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        say(console, "redis-benchmark not found: no Lua ceiling")
        return {}
    script = (resources.files("flashsale") / "lua" / "reserve.lua").read_text()
    sha = hashlib.sha1(script.encode()).hexdigest()  # how Redis names a script
    redis.Redis(port=port).script_load(script)
    out = {}
    paths = (("sold_out", data.sold_out_campaign), ("hold", data.success_campaigns[0]))
    for path, campaign in paths:
        tag = "{campaign:" + campaign + "}"
        done = subprocess.run(
            [
                *(exe, "-p", str(port), "-c", "16", "-P", "16", "-n", str(LUA_CALLS), "-q"),
                *("-r", "100000000", "EVALSHA", sha, "5", tag, tag + ":h:bench:__rand_int__"),
                *(tag + ":deadlines", tag + ":mheld", tag + ":taken"),
                *("bench-member", "bench:__rand_int__", "1", "fp", "0", "60000", "60"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        found = re.findall(r"([\d.]+) requests per second", done.stdout.replace(",", ""))
        if found:
            out[path] = float(found[-1])
            say(console, f"reserve.lua straight to one Redis, {path} path: {out[path]:,.0f}/s")
    return out


def _commit_calls(statements: StatementStats, url: str) -> tuple[int, float] | None:
    """Group commits during the load and the PostgreSQL time they took (ms), from
    pg_stat_statements (reset before each load)."""
    if not statements.available:
        return None
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) "
            "FROM pg_stat_statements WHERE query LIKE '%commit_redemptions%'"
        ).fetchone()
    return (int(row[0]), float(row[1])) if row else None


def run(profile: Profile, out: Path, console: Console) -> int:
    started = datetime.now(UTC)
    results: list[Measured] = []
    lua: dict[str, float] = {}
    with local_stack(console, keep=False) as (stack, have_statements), local_cluster() as cluster:
        say(console, f"Redis Cluster up: {cluster.service_url}")
        servers = _start(stack, cluster, stack.data_dir.parent)
        try:
            datasets = {
                system: asyncio.run(seed(Stores(stack.database_url, url), profile))
                for system, url in (("server", stack.redis_url), ("cluster", cluster.service_url))
            }
            redis_pids = {
                "server": [p for p in [pid_from_file(stack.redis_dir / "redis.pid")] if p],
                "cluster": cluster.pids(),
            }
            postmaster = pid_from_file(stack.postgres_dir / "postmaster.pid")
            statements = StatementStats(stack.database_url, {"surge": "surge"})
            statements.available = statements.available and have_statements
            plans = {s: _specs(profile, servers[s].address, datasets[s], s) for s in SYSTEMS}
            with LoadGenerator(profile.client_processes) as gen:
                for step in range(len(plans["server"])):
                    for system in SYSTEMS:
                        key, spec = plans[system][step]
                        statements.reset()
                        pids = [servers[system].proc.pid]
                        before = {
                            "surge": _pids_cpu(pids),
                            "redis": _pids_cpu(redis_pids[system]),
                            "postgresql": _pg_cpu(postmaster),
                        }
                        samples = gen.run(spec)
                        cpu = {
                            "surge": _pids_cpu(pids) - before["surge"],
                            "redis": _pids_cpu(redis_pids[system]) - before["redis"],
                            "postgresql": _pg_cpu(postmaster) - before["postgresql"],
                        }
                        m = _measure(
                            key,
                            system,
                            samples,
                            cpu,
                            _commit_calls(statements, stack.database_url),
                            profile.hot_stock,
                        )
                        results.append(m)
                        say(
                            console,
                            f"{key:<17} {system:<8} {m.per_second:>9,.0f}/s  "
                            f"p99 {m.p99_ms:6.1f} ms  {dict(outcomes(samples))}",
                        )
            lua = lua_ceiling(stack.redis_port, datasets["server"], console)
        finally:
            for server in servers.values():
                server.stop()
    _print(results, lua, profile, console)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"cluster-{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(
        json.dumps(
            {
                "profile": profile.name,
                "started_at": started.isoformat(),
                "cpus": os.cpu_count(),
                "results": [m.__dict__ for m in results],
                "lua_calls_per_second": lua,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"JSON: {path}")
    problems = [f"{m.system} hot item oversold" for m in results if m.oversold]
    problems += [f"{m.system} {m.key}: {m.internal} INTERNAL" for m in results if m.internal]
    for problem in problems:
        console.print(f"[red]PROBLEM[/red] {problem}")
    return 1 if problems else 0


def _start(stack: LocalStack, cluster: LocalCluster, folder: Path) -> dict[str, ServerProcess]:
    servers: dict[str, ServerProcess] = {}
    # One secret for both servers, so the loads' one token is good on either.
    base = with_credentials(dict(os.environ))
    os.environ["SURGE_TOKEN"] = base["SURGE_TOKEN"]
    try:
        for system, url in (("server", stack.redis_url), ("cluster", cluster.service_url)):
            port = free_port()
            env = base | {
                "BENCH_PORT": str(port),
                "DATABASE_URL": stack.database_url,
                "REDIS_URL": url,
                "SURGE_GRPC_ADDRESS": f"127.0.0.1:{port}",
                "SURGE_DATA_DIR": str(folder / "unused-data"),
                "SURGE_METRICS_PORT": "0",
                "SURGE_DRAIN_SECONDS": "0",
            }
            servers[system] = ServerProcess(
                f"surge-{system}",
                [sys.executable, "-m", "server.cli", "serve"],
                env,
                folder / f"surge-{system}.log",
            )
            servers[system].wait_ready()
    except Exception:
        for server in servers.values():
            server.stop()
        raise
    return servers


def _print(results: list[Measured], lua: dict[str, float], profile: Profile, c: Console) -> None:
    by = {(m.key, m.system): m for m in results}
    table = Table(title=f"Surge on one Redis server vs a 3+3 Redis Cluster ({profile.name})")
    for column in ("load", "server /s", "cluster /s", "cluster/server", "p99 ms (s / c)"):
        table.add_column(column, justify="right")
    table.add_column("CPU µs per answer: surge / redis / postgresql (server | cluster)")
    for key in ("floor", "redeem", "refusal_sold_out", "hot"):
        s, k = by.get((key, "server")), by.get((key, "cluster"))
        if s is None or k is None:
            continue

        def cpu(m: Measured) -> str:
            return " / ".join(f"{m.cpu_us[p]:,.0f}" for p in ("surge", "redis", "postgresql"))

        table.add_row(
            key,
            f"{s.per_second:,.0f}",
            f"{k.per_second:,.0f}",
            f"{k.per_second / s.per_second:.2f}" if s.per_second else "n/a",
            f"{s.p99_ms:.1f} / {k.p99_ms:.1f}",
            f"{cpu(s)} | {cpu(k)}",
        )
    c.print(table)
    for path, rate in lua.items():
        c.print(f"Lua ceiling, one Redis core, reserve.lua {path} path: {rate:,.0f} calls/s")
    for system in SYSTEMS:
        m = by.get(("redeem", system))
        if m and m.commits:
            per_s = m.commits / (profile.redeem_s + profile.warmup_s)
            ms = m.commit_ms / m.commits
            batch = m.answers / m.commits
            c.print(
                f"PostgreSQL, success path on {system}: {per_s:,.0f} group commits/s of "
                f"{batch:.1f} redemptions, {ms:.2f} ms each in PostgreSQL: one commit worker "
                f"could take {1000 / ms:,.0f} commits/s, {batch * 1000 / ms:,.0f} redemptions/s "
                "at this batch size"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    began = time.monotonic()
    try:
        code = run(PROFILES[args.profile], args.out, console)
    except Exception as e:
        console.print_exception()
        console.print(f"[red]benchmark could not run: {e}[/red]")
        return 2
    console.print(f"done in {time.monotonic() - began:.0f}s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
