"""`make loadtest-lottery`: the lottery profile (issue 16 item 5), start to verdict.

Thousands of members draw from one lottery with few prizes for `--seconds`, through Locust
(loadtest/lottery_users.py) against a `surge serve` subprocess on a private stack (as
loadtest.run does); `--chaos` SIGKILLs the server mid-run and starts it again. Then, one
hold deadline and a sweep later, the audit (loadtest/lottery_audit.py): prizes awarded <=
stock, every draw's points spent exactly once, every recorded OK in PostgreSQL, nothing
left held in Redis. Prints draws/s, p99 and prizes awarded vs stock; exits 1 on a
violation or too many unexpected answers.

    python -m loadtest.lottery [--members 3000] [--users 120] [--seconds 40] [--chaos]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import grpc

from loadtest.credentials import authorised, with_credentials
from loadtest.lottery_audit import audit
from loadtest.run import SERVER_TIMINGS, SETTLE_S, Server, free_port, say, stores
from loadtest.seed import timestamp
from loadtest.summary import read_stats
from loyalty.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    lottery_pb2,
    lottery_pb2_grpc,
    member_pb2,
    member_pb2_grpc,
)

USERS_FILE = Path(__file__).with_name("lottery_users.py")
RPC_TIMEOUT_S = 10.0
COST = 100
POINTS = 1_000  # ten draws' worth; the limits cut most members off first
DAILY, TOTAL = 6, 8
# Few prizes against thousands of draws: they run out early, the consolation goes on.
PRIZES = (("Gift card", 40, 6), ("Kettle voucher", 10, 2), ("Thanks for playing", None, 92))


def seed(address: str, members: int, run_id: str, seconds: float) -> dict[str, object]:
    with grpc.insecure_channel(address) as plain:
        channel = authorised(plain)
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        people = member_pb2_grpc.MemberServiceStub(channel)
        specs = []
        for i, (name, stock, weight) in enumerate(PRIZES):
            if stock is None:
                specs.append(
                    lottery_pb2.PrizeSpec(
                        name=name, kind=lottery_pb2.PRIZE_KIND_NONE, weight=weight
                    )
                )
                continue
            item = catalog.CreateItem(
                catalog_pb2.CreateItemRequest(
                    sku=f"ld-{run_id}-{i}",
                    name=name,
                    kind=common_pb2.ITEM_KIND_VIRTUAL,
                    initial_stock=stock,
                ),
                timeout=RPC_TIMEOUT_S,
            )
            specs.append(
                lottery_pb2.PrizeSpec(
                    name=name,
                    kind=lottery_pb2.PRIZE_KIND_GOOD,
                    item_id=item.id,
                    weight=weight,
                    stock=stock,
                )
            )
        now = time.time()
        created = lottery_pb2_grpc.LotteryServiceStub(channel).CreateLottery(
            lottery_pb2.CreateLotteryRequest(
                name=f"Load test lottery {run_id}",
                cost_points=COST,
                starts_at=timestamp(now - 60),
                ends_at=timestamp(now + seconds + 3600),
                per_member_daily=DAILY,
                per_member_total=TOTAL,
                prizes=specs,
            ),
            timeout=RPC_TIMEOUT_S,
        )

        def one(i: int) -> str:
            member = people.CreateMember(
                member_pb2.CreateMemberRequest(
                    display_name=f"Player {i}", external_ref=f"ld-{run_id}-{i}"
                ),
                timeout=RPC_TIMEOUT_S,
            )
            people.EarnPoints(
                member_pb2.EarnPointsRequest(
                    member_id=member.id,
                    points=POINTS,
                    reason="load test: lottery tickets",
                    idempotency_key=f"seed-{run_id}",
                ),
                timeout=RPC_TIMEOUT_S,
            )
            return str(member.id)

        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(one, range(members)))
    return {"lottery_id": created.id, "members": ids}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.lottery", description=__doc__)
    parser.add_argument("--members", type=int, default=3000)
    parser.add_argument("--users", type=int, default=120)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--chaos", action="store_true", help="SIGKILL the server mid-run")
    parser.add_argument("--results", type=Path, default=Path("results/loadtest"))
    parser.add_argument("--max-failure-ratio", type=float, default=0.01)
    args = parser.parse_args(argv)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    run_dir = args.results / f"{run_id}-lottery" / ""
    records = run_dir / "records"
    records.mkdir(parents=True)
    problems: list[str] = []
    with stores() as urls:
        address = f"127.0.0.1:{free_port()}"
        env = with_credentials(
            {
                **os.environ,
                **urls,
                **SERVER_TIMINGS,
                "SURGE_GRPC_ADDRESS": address,
                "SURGE_METRICS_PORT": str(free_port()),
            }
        )
        os.environ["SURGE_TOKEN"] = env["SURGE_TOKEN"]
        server = Server(env, address, run_dir)
        try:
            say(f"surge serve on {address} ready in {server.start():.1f}s; seeding")
            sale = seed(address, args.members, run_id, args.seconds)
            (run_dir / "seed.json").write_text(json.dumps(sale))
            say(f"seeded {args.members} members and lottery {sale['lottery_id']}; drawing")
            command = [
                sys.executable, "-m", "locust", "-f", str(USERS_FILE), "--headless",
                "--host", address, "-u", str(args.users), "-r", str(args.users),
                "-t", f"{int(args.seconds)}s", "--stop-timeout", "35", "--only-summary",
                "--csv", str(run_dir / "locust"), "--logfile", str(run_dir / "locust.log"),
                "--lottery-seed", str(run_dir / "seed.json"),
                "--lottery-records", str(records),
            ]  # fmt: skip
            with (run_dir / "locust.out").open("wb") as out:
                locust = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
                if args.chaos:
                    time.sleep(args.seconds / 3)
                    say(f"CHAOS: SIGKILL surge serve (pid {server.kill()})")
                    time.sleep(1.0)
                    say(f"CHAOS: restarted, SERVING after {server.start():.1f}s")
                locust.wait(timeout=args.seconds + 120)
            if locust.returncode not in (0, 1):
                problems.append(f"Locust exited with {locust.returncode} (see locust.log)")
            say(f"Locust done; settling for {SETTLE_S:.0f}s (one hold deadline and a sweep)")
            time.sleep(SETTLE_S)
        finally:
            code = server.stop()
        if code != 0:
            problems.append(f"surge serve exited with {code} on SIGTERM")
        say("auditing PostgreSQL and Redis, and every OK the users received")
        report = audit(urls["DATABASE_URL"], urls["REDIS_URL"], str(sale["lottery_id"]), records)

    rows = read_stats(run_dir / "locust_stats.csv")
    draws = [r for r in rows if r.name.startswith("Draw")]
    ok = next((r for r in rows if r.name == "Draw"), None)
    total = sum(r.requests for r in draws)
    failed = sum(r.failures for r in rows)
    lines = [
        f"lottery load test{' (chaos)' if args.chaos else ''}: {args.members} members, "
        f"{args.users} users, {args.seconds:.0f}s",
        f"draw calls {total} ({', '.join(f'{r.name} {r.requests}' for r in draws)})",
    ]
    if ok is not None:
        lines.append(f"OK draws/s {ok.rps:.1f}, p50 {ok.p50:.0f} ms, p99 {ok.p99:.0f} ms")
    lines.append(f"draws in PostgreSQL {report.draws}; OKs recorded {report.recorded}")
    for name, stock, awarded in report.prizes:
        lines.append(
            f"  prize {name}: awarded {awarded} of {stock if stock is not None else 'unlimited'}"
        )
    if total and failed / total > args.max_failure_ratio:
        problems.append(f"{failed} unexpected answers of {total} calls")
    problems += [f"VIOLATION: {v}" for v in report.violations]
    lines += problems or ["audit OK: prizes within stock, points spent once, every OK durable"]
    text = "\n".join(lines)
    (run_dir / "summary.txt").write_text(text + "\n")
    print(text)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
