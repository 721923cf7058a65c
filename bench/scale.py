"""`make bench-scale`: what the work costs as the data grows (issue 19, item 4). Not in CI.

    python -m bench.scale --out results/bench [--members-large N --campaigns-large N
                          --holds N --seconds S]

Two data sets, one after the other in the same run, on one private Redis + PostgreSQL
(bench.servers.local_stack), each with a database of its own (copied from the migrated,
empty one), Redis flushed, and a fresh server: small (10^3 members, 10 campaigns) and large
(10^6 members, 10^4 campaigns by default). For each:

1. One member and one campaign through the domain objects (the templates), cloned with COPY
   (bench/bulk.py): campaigns first, then `surge rebuild-cache` (the project's rebuild, the
   real path that puts the gate's state in Redis; the redeem path would also load a missing
   campaign or member lazily, one at a time); then members, then the rebuild again. INFO
   memory around each rebuild gives Redis bytes per campaign and per member.
2. The real server (`surge serve`), once PostgreSQL is quiet (its leader's start-up work, e.g.
   the first tier evaluation over every member, is timed and reported, not measured as
   load); a success-path redeem load (a random member among all, a
   random campaign among all, a fresh key per call, as `make bench`'s `redeem`) and a
   sold-out load (a campaign with no unit left, random members), each after a warm-up.
   PostgreSQL's sizes (pg_total_relation_size) of the tables a redemption writes, around the
   success load, give bytes per redemption committed.
3. Large set only: pending holds, lapsed, released by the real sweep pass (bench/holds.py),
   with the server stopped.
4. The audit (flashsale/audit.py), as bench.run does.

Prints the tables and the ratios large/small, writes <out>/<stamp>-scale.json. The target
(the large set within 10% of the small set's throughput) is reported, never asserted. Exit
status: 1 on a correctness problem (audit, a hold not released, an unexpected answer), 2 when
the harness could not run, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import redis
from rich.console import Console

from bench import bulk
from bench.holds import sweep_holds
from bench.loadgen import OK, SOLD_OUT, LoadGenerator, LoadSpec, steady
from bench.probes import Processes, pid_from_file
from bench.report import write_json
from bench.run import _audit, _git_revision
from bench.scale_report import TARGET_RATIO, print_report, problems, ratios
from bench.scale_stores import (
    REDEMPTION_TABLES,
    fresh_database,
    mark_tier_run_done,
    pg_sizes,
    rebuild,
    redis_memory,
    settled_count,
    wait_quiet,
)
from bench.servers import ROOT, local_stack, say, start_servers
from loadtest import credentials
from loyalty.v1 import redemption_pb2, redemption_pb2_grpc
from server.app import Stores
from server.embedded import LocalStack


@dataclass(frozen=True)
class Options:
    members_small: int = 1_000
    campaigns_small: int = 10
    members_large: int = 1_000_000
    campaigns_large: int = 10_000
    holds: int = 100_000
    seconds: float = 10.0
    warmup_s: float = 2.0
    concurrency: int = 64
    client_processes: int = 2
    quiet_max_s: float = 120.0  # wait at most this long for the server's start-up work
    # Let the leader's first daily tier evaluation run (over every member: ~60 members/s
    # were seen on a busy 2-core box, hours at 10^6) instead of counting it as just done.
    first_tier_run: bool = False


def _probe(address: str, member_id: str, campaign_id: str) -> str:
    """One redemption through the real server for a cloned member and campaign."""
    with grpc.insecure_channel(address) as channel:
        stub = redemption_pb2_grpc.RedemptionServiceStub(channel)
        try:
            stub.Redeem(
                redemption_pb2.RedeemRequest(
                    member_id=member_id,
                    campaign_id=campaign_id,
                    quantity=1,
                    idempotency_key="scale-probe",
                ),
                timeout=30,
                metadata=credentials.metadata(),
            )
        except grpc.RpcError as error:
            return f"{error.code().name}: {error.details()}"
    return OK


def _measure(gen: LoadGenerator, procs: Processes, spec: LoadSpec, expected: str) -> dict[str, Any]:
    before = procs.cpu()
    samples = gen.run(spec)
    after = procs.cpu()
    stats = steady(samples, {expected})
    calls = samples.calls_total
    cpu_us = {k: (after[k] - before.get(k, 0.0)) / calls * 1e6 if calls else None for k in after}
    return {
        "expected": expected,
        "per_second": stats.per_second,
        "p50_ms": stats.p50_ms,
        "p99_ms": stats.p99_ms,
        "calls": stats.calls,
        "calls_total": calls,
        "outcomes": dict(Counter(samples.outcome)),
        "cpu_us_per_call": cpu_us,  # warm-up calls included, like their CPU
    }


def run_set(
    name: str,
    stack: LocalStack,
    sizes: tuple[int, int, int],
    options: Options,
    console: Console,
) -> dict[str, Any]:
    """One data set: (members, campaigns, holds); holds 0 skips the sweeper."""
    members, campaigns, holds = sizes
    out: dict[str, Any] = {"members": members, "campaigns": campaigns}
    stores = Stores(stack.database_url, stack.redis_url)
    client = redis.Redis.from_url(stack.redis_url)
    templates = asyncio.run(bulk.make_templates(stores))
    # A rebuild with only the templates in: what it loads once (its scripts) and the
    # templates and sold-out campaign themselves are in the "before" figure, not per clone.
    warm_rebuild, _ = rebuild(stack)
    mem0, keys0 = redis_memory(client)
    clones, copy_c = bulk.clone(stack.database_url, templates.campaign, campaigns - 1)
    campaign_ids = (templates.campaign_id, *clones)
    rebuild_c, printed_c = rebuild(stack)
    mem1, keys1 = redis_memory(client)
    clones, copy_m = bulk.clone(stack.database_url, templates.member, members - 1)
    member_ids = (templates.member_id, *clones)
    rebuild_all, printed_all = rebuild(stack)
    mem2, keys2 = redis_memory(client)
    client.close()
    say(
        console,
        f"{name}: COPY {campaigns:,} campaigns {copy_c:.1f}s, rebuild {rebuild_c:.1f}s; "
        f"COPY {members:,} members {copy_m:.1f}s, rebuild {rebuild_all:.1f}s",
    )
    out["phases_s"] = {
        "rebuild_templates_only": warm_rebuild,
        "copy_campaigns": copy_c,
        "rebuild_campaigns": rebuild_c,
        "copy_members": copy_m,
        "rebuild_all": rebuild_all,
    }
    out["rebuild_printed"] = [printed_c, printed_all]
    out["redis"] = {
        "used_memory": [mem0, mem1, mem2],
        "keys": [keys0, keys1, keys2],
        "bytes_per_campaign": (mem1 - mem0) / (campaigns - 1) if campaigns > 1 else None,
        "keys_per_campaign": (keys1 - keys0) / (campaigns - 1) if campaigns > 1 else None,
        "bytes_per_member": (mem2 - mem1) / (members - 1) if members > 1 else None,
        "keys_per_member": (keys2 - keys1) / (members - 1) if members > 1 else None,
    }

    if not options.first_tier_run:
        mark_tier_run_done(stack.database_url)
    servers = start_servers(stack, stack.data_dir.parent, console)
    servers.naive.stop()  # start_servers starts the naive peer and the bare floor too;
    servers.bare.stop()  # this benchmark is Surge's alone
    surge = servers.surges[0]
    try:
        out["phases_s"]["server_quiet"] = wait_quiet(stack.database_url, options.quiet_max_s)
        say(
            console,
            f"{name}: server's start-up work done in {out['phases_s']['server_quiet']:.1f}s",
        )
        out["probe"] = _probe(surge.address, member_ids[-1], campaign_ids[-1])
        procs = Processes(
            servers={"surge": (surge.proc.pid,)},
            redis_pid=pid_from_file(stack.redis_dir / "redis.pid"),
            postmaster_pid=pid_from_file(stack.postgres_dir / "postmaster.pid"),
        )
        base = LoadSpec(
            name="redeem",
            target=surge.address,
            call="redeem",
            concurrency=options.concurrency,
            duration_s=options.seconds,
            warmup_s=options.warmup_s,
            campaign_ids=campaign_ids,
            member_ids=member_ids,
            key_prefix=f"scale-{name}",
            metadata=credentials.metadata(),
        )
        sizes0, count0 = pg_sizes(stack.database_url), settled_count(stack.database_url)
        with LoadGenerator(options.client_processes) as gen:
            out["success"] = _measure(gen, procs, base, OK)
            count1 = settled_count(stack.database_url)
            sizes1 = pg_sizes(stack.database_url)
            sold_out = replace(
                base,
                name="sold_out",
                campaign_ids=(templates.sold_out_campaign,),
                key_prefix=f"scale-{name}-soldout",
            )
            out["sold_out"] = _measure(gen, procs, sold_out, SOLD_OUT)
    finally:
        out["server_exit"] = surge.stop()
    for load in ("success", "sold_out"):
        m = out[load]
        say(console, f"{name}: {load} {m['per_second']:,.0f}/s p99 {m['p99_ms']:.1f} ms")
    grew = {t: sizes1.get(t, 0) - n for t, n in sizes0.items()}
    committed = count1 - count0
    out["postgresql"] = {
        "redemptions_committed": committed,
        "bytes_per_redemption": (
            sum(grew.get(t, 0) for t in REDEMPTION_TABLES) / committed if committed else None
        ),
        "other_tables_bytes": sum(n for t, n in grew.items() if t not in REDEMPTION_TABLES),
        "bytes_by_table": {t: n for t, n in sorted(grew.items(), key=lambda x: -x[1]) if n},
    }
    if holds:
        found = asyncio.run(sweep_holds(stores, member_ids, campaign_ids, holds))
        out["sweeper"] = found.as_dict()
        say(
            console,
            f"{name}: {holds:,} holds made in {found.create_s:.1f}s, released in "
            f"{found.sweep_s:.1f}s ({found.passes} passes, {found.released_per_s:,.0f}/s)",
        )
    started = time.monotonic()
    ok, violations = asyncio.run(_audit(stores))
    out["audit"] = {"ok": ok, "violations": violations[:20], "seconds": time.monotonic() - started}
    say(console, f"{name}: audit {'OK' if ok else 'FAILED'} in {out['audit']['seconds']:.1f}s")
    return out


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def run(options: Options, out: Path, console: Console) -> int:
    started = datetime.now(UTC)
    meta = {
        "started_at": started.isoformat(),
        "git": _git_revision(),
        "cpus": os.cpu_count(),
        "options": options.__dict__,
        "loadavg_before": os.getloadavg(),
        "note": "one Redis + PostgreSQL; per data set, one after the other: a database of its "
        "own (copied from the migrated empty one), Redis flushed, a fresh Surge server",
    }
    sizes = {
        "small": (options.members_small, options.campaigns_small, 0),
        "large": (options.members_large, options.campaigns_large, options.holds),
    }
    # start_servers mints SURGE_TOKEN into os.environ for the first server's secret; the
    # next server gets a secret of its own, so each set starts from the caller's environment.
    caller_token = os.environ.get("SURGE_TOKEN")
    sets = {}
    try:
        with local_stack(console, keep=False) as (stack, _):
            for name, size in sizes.items():
                _set_env("SURGE_TOKEN", caller_token)
                sets[name] = run_set(
                    name, fresh_database(stack, f"scale_{name}"), size, options, console
                )
    finally:
        _set_env("SURGE_TOKEN", caller_token)
    meta["loadavg_after"] = os.getloadavg()
    table_ratios = ratios(sets["small"], sets["large"])
    success = table_ratios["success_per_second"]
    found = {
        "ratios": table_ratios,
        "target": {
            "success_ratio": success,
            "met": success is not None and success >= TARGET_RATIO,
        },
    }
    wrong = problems(sets)
    print_report(sets, found, console)
    document = {"meta": meta, "sets": sets, **found, "problems": wrong}
    path = write_json(document, out, f"{started.strftime('%Y%m%dT%H%M%SZ')}-scale")
    console.print(f"JSON: {path}")
    for problem in wrong:
        console.print(f"[red]PROBLEM[/red] {problem}")
    return 1 if wrong else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = Options()
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    for field in ("members_small", "campaigns_small", "members_large", "campaigns_large", "holds"):
        parser.add_argument(
            "--" + field.replace("_", "-"), type=int, default=getattr(defaults, field)
        )
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="per load")
    parser.add_argument("--warmup", type=float, default=defaults.warmup_s, help="per load")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--client-processes", type=int, default=defaults.client_processes)
    parser.add_argument(
        "--quiet-max",
        type=float,
        default=defaults.quiet_max_s,
        help="wait at most this long (s) for the server's start-up work before the loads",
    )
    parser.add_argument(
        "--first-tier-run",
        action="store_true",
        help="let the server's first daily tier evaluation run over the data set (by default "
        "it is recorded as just done: over 10^6 members it takes hours and runs under the loads)",
    )
    args = parser.parse_args(argv)
    options = Options(
        members_small=args.members_small,
        campaigns_small=args.campaigns_small,
        members_large=args.members_large,
        campaigns_large=args.campaigns_large,
        holds=args.holds,
        seconds=args.seconds,
        warmup_s=args.warmup,
        concurrency=args.concurrency,
        client_processes=args.client_processes,
        quiet_max_s=args.quiet_max,
        first_tier_run=args.first_tier_run,
    )
    if min(options.members_small, options.campaigns_small) < 2:
        parser.error("each data set needs at least 2 members and 2 campaigns")
    console = Console(width=None if sys.stdout.isatty() else 150)
    try:
        return run(options, args.out, console)
    except KeyboardInterrupt:
        return 2
    except Exception as e:
        console.print_exception()
        console.print(f"[red]bench-scale could not run: {e}[/red]")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
