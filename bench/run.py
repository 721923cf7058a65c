"""`make bench`: one command, one run, one machine, everything side by side.

    python -m bench.run --profile quick|full --out results/bench

1. Starts its own Redis and PostgreSQL (server.embedded.LocalStack) in a temporary folder on
   free ports, with pg_stat_statements when the cluster can load it; two databases: Surge's
   and the naive peer's, both migrated.
2. Starts the real server (`surge serve`, as a subprocess), the naive peer
   (`python -m bench.naive`) and the bare floor (`python -m bench.bare`: a grpc.aio server
   with health only), each on its own free loopback port.
3. Seeds the same data set into both (bench.workloads.seed).
4. Runs the loads one after the other from client processes of its own (bench.loadgen):
   the bare floor, Surge's floor, success path, refusals, hot item (Surge and the naive peer),
   then the flash-sale mix (one hot campaign and warm ones, run past sell-out) after the
   bare floor at the mix's concurrency.
5. Prints the table and the ratios, writes JSON to <out>/<timestamp>.json, stops everything.

Exit status: 0 when the run completed, whatever the ratios (they are reported, not
asserted); 1 on a correctness problem (hot item oversold, INTERNAL errors, audit
violations); 2 when the harness itself could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import redis
from rich.console import Console

from bench import report
from bench.loadgen import LoadGenerator
from bench.probes import (
    Processes,
    StatementStats,
    pid_from_file,
    redis_commandstats,
    redis_delta,
)
from bench.servers import (
    NAIVE_DATABASE,
    ROOT,
    local_stack,
    say,
    start_servers,
    with_database,
)
from bench.workloads import PROFILES, Dataset, Load, Profile, loads, seed
from server.app import Stores

# -- One run ---------------------------------------------------------------------------------


_PROFILED = ("floor", "redeem", "refusal_sold_out", "refusal_points", "hot", "mix")
_LOAD_KEYS = ("floor", "redeem", "refusal_sold_out", "refusal_points", "hot", "floor_mix", "mix")


def _py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--duration",
            str(int(seconds)),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_loads(
    profile: Profile,
    all_loads: list[Load],
    gen: LoadGenerator,
    procs: Processes,
    redis_client: redis.Redis,
    statements: StatementStats,
    console: Console,
    py_spy: Path | None,
) -> list[report.Result]:
    results = []
    for load in all_loads:
        spec = load.spec
        statements.reset()
        redis_before = redis_commandstats(redis_client)
        cpu_before = procs.cpu()
        spy = None
        if py_spy is not None and load.key in _PROFILED and load.system == "surge":
            spy = _py_spy(
                procs.servers["surge"][0],  # the first process only
                spec.warmup_s + spec.duration_s,
                py_spy / f"surge-{load.key}-{profile.name}.txt",
            )
        samples = gen.run(spec)
        cpu_after = procs.cpu()
        pg = statements.read()
        redis_used = redis_delta(redis_before, redis_commandstats(redis_client))
        if spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(30)
        result = report.build(
            load,
            samples,
            cpu_s={k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after},
            redis_commands=redis_used,
            pg_statements=pg,
        )
        results.append(result)
        first = result.rows[0].stats
        say(
            console,
            f"{load.key:<17} {load.system:<5} {first.per_second:>9,.0f}/s  "
            f"p99 {first.p99_ms:6.1f} ms  {dict(result.outcomes)}",
        )
    return results


async def _audit(stores: Stores) -> tuple[bool, list[str]]:
    from flashsale.audit import audit
    from server.app import App
    from server.config import Settings

    app = App(Settings(grpc_address="127.0.0.1:0"), stores)
    await app.pool.open(wait=True, timeout=30)
    try:
        found = await audit(app.pool, app.redis, settled=False, stuck_after_ms=60_000)
    finally:
        await app.redis.aclose()
        await app.pool.close()
    return found.ok, found.violations


def _git_revision() -> str:
    with contextlib.suppress(Exception):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return "unknown"


def run(
    profile: Profile,
    out: Path,
    console: Console,
    *,
    py_spy: Path | None = None,
    only: set[str] | None = None,
    keep: bool = False,
    surge_processes: int = 1,
) -> int:
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    meta: dict[str, Any] = {
        "profile": profile.name,
        "started_at": started.isoformat(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "git": _git_revision(),
        "client_processes": profile.client_processes,
        "concurrency": profile.concurrency,
        "hot_concurrency": profile.hot_concurrency,
        "surge_processes": surge_processes,
        "profile_settings": asdict(profile),
        "loadavg_before": os.getloadavg(),
        "surge_env": {k: v for k, v in os.environ.items() if k.startswith("SURGE_")},
    }
    with local_stack(console, keep=keep) as (stack, have_statements):
        folder = stack.data_dir.parent
        servers = start_servers(stack, folder, console, surge_processes=surge_processes)
        surge, naive, bare = servers.surges[0], servers.naive, servers.bare
        try:
            surge_stores = Stores(stack.database_url, stack.redis_url)
            naive_stores = Stores(
                with_database(stack.database_url, NAIVE_DATABASE),
                stack.redis_url.rsplit("/", 1)[0] + "/1",  # seeding only: never read
            )
            t0 = time.monotonic()
            surge_data: Dataset = asyncio.run(seed(surge_stores, profile))
            naive_data: Dataset = asyncio.run(seed(naive_stores, profile))
            say(
                console,
                f"seeded both in {time.monotonic() - t0:.1f}s: {profile.campaigns} "
                f"campaigns, {profile.members} members (+{profile.poor_members} without points)"
                f", hot item of {profile.hot_stock} units, mix of {profile.mix_hot_stock} hot "
                f"units + {profile.mix_warm_campaigns} warm campaigns",
            )
            all_loads = loads(
                profile,
                surge=surge.address,
                naive=naive.address,
                bare=bare.address,
                surge_data=surge_data,
                naive_data=naive_data,
            )
            if only:
                all_loads = [load for load in all_loads if load.key in only]
            procs = Processes(
                servers={
                    "surge": tuple(x.proc.pid for x in servers.surges),
                    "naive": (naive.proc.pid,),
                    "bare": (bare.proc.pid,),
                },
                redis_pid=pid_from_file(stack.redis_dir / "redis.pid"),
                postmaster_pid=pid_from_file(stack.postgres_dir / "postmaster.pid"),
            )
            statements = StatementStats(
                with_database(stack.database_url, "postgres"),
                {"surge": "surge", "naive": NAIVE_DATABASE},
            )
            if not have_statements:
                statements.available = False
            redis_client = redis.Redis.from_url(stack.redis_url)
            measure_started = time.monotonic()
            with LoadGenerator(profile.client_processes) as gen:
                results = run_loads(
                    profile, all_loads, gen, procs, redis_client, statements, console, py_spy
                )
            meta["measured_wall_s"] = time.monotonic() - measure_started
            meta["loadavg_after"] = os.getloadavg()
            audit_ok, violations = asyncio.run(_audit(surge_stores))
        finally:
            meta["server_exit"] = servers.stop()

    found = report.problems(results, profile.hot_stock, profile.mix_hot_stock)
    if not audit_ok:
        found += [f"audit: {v}" for v in violations[:20]]
    table_ratios = report.ratios(results)
    report.print_report(results, table_ratios, meta, console)
    path = report.write_json(report.to_json(results, table_ratios, meta, found), out, stamp)
    console.print(f"JSON: {path}")
    console.print(
        f"measured for {meta['measured_wall_s']:.0f}s; audit {'OK' if audit_ok else 'FAILED'}"
    )
    for problem in found:
        console.print(f"[red]PROBLEM[/red] {problem}")
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    parser.add_argument("--client-processes", type=int, help="override the profile's")
    parser.add_argument("--concurrency", type=int, help="override the profile's")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=_LOAD_KEYS,
        help="run only these loads (ratios need floor and their peers)",
    )
    parser.add_argument(
        "--surge-processes",
        type=int,
        default=1,
        metavar="N",
        help="run N Surge server processes on one port (SO_REUSEPORT); CPU is their sum",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (stores, server logs)"
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="record the Surge server with py-spy (raw stacks) during each of its loads; "
        "summarise with python -m bench.flame",
    )
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    overrides: dict[str, Any] = {}
    if args.client_processes:
        overrides["client_processes"] = args.client_processes
    if args.concurrency:
        overrides["concurrency"] = args.concurrency
    if overrides:
        from dataclasses import replace

        profile = replace(profile, **overrides)
    console = Console(width=None if sys.stdout.isatty() else 150)
    try:
        return run(
            profile,
            args.out,
            console,
            py_spy=args.py_spy,
            only=set(args.only) if args.only else None,
            keep=args.keep,
            surge_processes=args.surge_processes,
        )
    except KeyboardInterrupt:
        return 2
    except Exception as e:
        console.print_exception()
        console.print(f"[red]benchmark could not run: {e}[/red]")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
