"""`make loadtest`: one audited holiday surge, start to verdict.

1. Stores: DATABASE_URL + REDIS_URL when both are set; otherwise a private embedded Redis +
   PostgreSQL in a temporary folder on free ports (never the developer's `.data/` stack),
   removed afterwards.
2. A `surge serve` subprocess on a free port, with short hold/sweep timings so the run
   settles in seconds. A subprocess, so the chaos variant can SIGKILL it and start another.
3. Seeds a fresh sale through the API (loadtest.seed), opening after a quiet browse.
4. Locust, headless, with the profile's LoadTestShape; HTML and CSV reports and every OK
   received go to results/loadtest/<run>/. Chaos: SIGKILL the server mid-surge, restart it.
5. Waits one hold deadline plus a sweep, stops the server (SIGTERM), runs
   `surge audit --settled --recorded <records>` as its own command, prints the summary,
   and exits 1 on an audit violation or too many unexpected outcomes.

    python -m loadtest.run --profile ci [--chaos] [--processes N] [--redis cluster]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loadtest import summary as summaries
from loadtest.credentials import authorised, with_credentials
from loadtest.profiles import PROFILES, Profile, get
from loadtest.seed import Seed, seed
from loyalty.v1 import campaign_pb2, campaign_pb2_grpc

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# Server timings for the load test: holds lapse and are swept within seconds, and abandoned
# points + cash redemptions expire during the run, so the sweeper's paths get exercised too.
SERVER_TIMINGS = {
    "SURGE_HOLD_TTL_SECONDS": "3",
    "SURGE_COMMIT_FENCE_SECONDS": "1",
    "SURGE_SWEEP_INTERVAL_SECONDS": "0.5",
    "SURGE_PAYMENT_WINDOW_SECONDS": "10",
    "SURGE_SHUTDOWN_GRACE_SECONDS": "5",
    "SURGE_DRAIN_SECONDS": "0",  # no load balancer in front to tell before stopping
}
SETTLE_S = 3 + 2 * 0.5 + 1.0  # one hold deadline, a sweep, and a margin for the sweep itself
LOCUST_START_S = 4.0  # from launching Locust to its first user
SERVER_READY_S = 60.0
AUDIT_TIMEOUT_S = 300.0


def say(message: str) -> None:
    print(f"[loadtest {datetime.now():%H:%M:%S}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def stores(redis_kind: str = "server") -> Iterator[dict[str, str]]:
    """The configured stores, or a private embedded stack that lives as long as the run;
    with `redis_kind` "cluster", its Redis is a private Redis Cluster (3 primaries, 3
    replicas) instead of one server."""
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if database_url and redis_url:
        say("using the configured DATABASE_URL and REDIS_URL")
        yield {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
        return
    from server.embedded import LocalStack
    from tests.local_cluster import local_cluster

    folder = Path(tempfile.mkdtemp(prefix="surge-loadtest-"))
    folder.chmod(0o755)  # the postgres user must reach its data directory inside
    stack = LocalStack(folder, free_port(), free_port())
    say(f"starting a private Redis + PostgreSQL in {folder}")
    try:
        stack.start()
        if redis_kind == "cluster":
            with local_cluster() as cluster:
                say(f"Redis is a private Redis Cluster: {cluster.service_url}")
                yield {"DATABASE_URL": stack.database_url, "REDIS_URL": cluster.service_url}
        else:
            yield {"DATABASE_URL": stack.database_url, "REDIS_URL": stack.redis_url}
    finally:
        stack.stop()
        shutil.rmtree(folder, ignore_errors=True)


class Server:
    """One `surge serve` at a time on a fixed address; each start logs to its own file."""

    def __init__(self, env: dict[str, str], address: str, log_dir: Path) -> None:
        self.env, self.address, self.log_dir = env, address, log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> float:
        """Starts the server and waits until health says SERVING; returns the seconds taken."""
        began = time.monotonic()
        self.starts += 1
        with (self.log_dir / f"server-{self.starts}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server.cli", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_serving()
        return time.monotonic() - began

    def _wait_serving(self) -> None:
        deadline = time.monotonic() + SERVER_READY_S
        request = health_pb2.HealthCheckRequest(service="")
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"surge serve exited with {self.proc.returncode}")
                with contextlib.suppress(grpc.RpcError):
                    reply = health.Check(request, timeout=1, wait_for_ready=True)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                time.sleep(0.1)
        raise RuntimeError(f"surge serve not SERVING within {SERVER_READY_S:.0f}s")

    def kill(self) -> int:
        """SIGKILL: no drain, no flush; returns the pid that was killed."""
        assert self.proc is not None
        pid = self.proc.pid
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        return pid

    def stop(self) -> int | None:
        """SIGTERM and wait for the graceful exit (SIGKILL if it hangs); the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            return None


def campaign_figures(address: str, sale: Seed) -> list[summaries.CampaignFigures]:
    with grpc.insecure_channel(address) as plain:
        stub = campaign_pb2_grpc.CampaignServiceStub(authorised(plain))
        figures = []
        for seeded in sale.campaigns:
            c = stub.GetCampaign(campaign_pb2.GetCampaignRequest(campaign_id=seeded.id), timeout=10)
            figures.append(
                summaries.CampaignFigures(
                    seeded.key, c.units_allotted, c.units_committed, c.units_held
                )
            )
        return figures


def run_locust(
    args: argparse.Namespace,
    profile: Profile,
    sale: Seed,
    server: Server,
    run_dir: Path,
    seed_path: Path,
    records: Path,
    report: summaries.Summary,
) -> None:
    """Runs Locust to the end of the shape; in chaos mode kills and restarts the server."""
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", server.address,
        "--html", str(run_dir / "report.html"), "--csv", str(run_dir / "locust"),
        "--stop-timeout", "35", "--only-summary", "--loglevel", "INFO",
        "--logfile", str(run_dir / "locust.log"),
        "--surge-seed", str(seed_path), "--surge-records", str(records),
    ]  # fmt: skip
    if args.processes != 1:
        command += ["--processes", str(args.processes)]
    deadline = time.monotonic() + sale.opens_at - time.time() + profile.sale_s + 120
    chaos_due = sale.opens_at + profile.chaos_kill_at_s if args.chaos else None
    with (run_dir / "locust.out").open("wb") as out:
        locust = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            while locust.poll() is None:
                if time.monotonic() > deadline:
                    report.problems.append("Locust did not finish in time")
                    locust.terminate()
                    locust.wait(timeout=30)
                    break
                if chaos_due is not None and time.time() >= chaos_due:
                    chaos_due = None
                    _chaos(profile, sale, server, report)
                time.sleep(0.1)
        finally:
            if locust.poll() is None:
                locust.kill()
                locust.wait(timeout=30)
    if locust.returncode not in (0, 1):  # 1: some failures, judged by the ratio instead
        report.problems.append(f"Locust exited with {locust.returncode} (see locust.log)")


def _chaos(profile: Profile, sale: Seed, server: Server, report: summaries.Summary) -> None:
    since = time.time() - sale.opens_at
    pid = server.kill()
    say(f"CHAOS: SIGKILL surge serve (pid {pid}) {since:.1f}s after the opening")
    time.sleep(profile.chaos_down_s)
    took = server.start()
    say(f"CHAOS: restarted, SERVING after {profile.chaos_down_s + took:.1f}s down")
    report.notes.append(
        f"chaos: SIGKILL at +{since:.1f}s ({profile.stage_at(since)}), "
        f"serving again {profile.chaos_down_s + took:.1f}s later"
    )


def audit(env: dict[str, str], records: Path, run_dir: Path, report: summaries.Summary) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "audit", "--settled", "--recorded", str(records)],
        env=env,
        capture_output=True,
        text=True,
        timeout=AUDIT_TIMEOUT_S,
        check=False,
    )
    (run_dir / "audit.txt").write_text(done.stdout + done.stderr)
    report.audit_ok = done.returncode == 0
    report.audit_violations = [
        line.removeprefix("VIOLATION: ")
        for line in done.stdout.splitlines()
        if line.startswith("VIOLATION: ")
    ]
    if done.returncode not in (0, 1):
        report.audit_violations.append(f"audit exited {done.returncode}: {done.stderr[-500:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__)
    parser.add_argument("--profile", default="ci", choices=sorted(PROFILES))
    parser.add_argument("--chaos", action="store_true", help="SIGKILL the server mid-surge")
    parser.add_argument(
        "--processes", type=int, default=1, help="Locust processes (-1: a core each)"
    )
    parser.add_argument(
        "--redis",
        choices=("server", "cluster"),
        default="server",
        help="the private stack's Redis: one server, or a 3+3 Redis Cluster",
    )
    parser.add_argument("--results", type=Path, default=Path("results/loadtest"))
    parser.add_argument("--max-failure-ratio", type=float, default=0.01)
    args = parser.parse_args(argv)
    profile = get(args.profile)
    began = time.monotonic()
    name = (
        f"{datetime.now():%Y%m%d-%H%M%S}-{profile.name}"
        + ("-cluster" if args.redis == "cluster" else "")
        + ("-chaos" if args.chaos else "")
    )
    run_dir = args.results / name
    records = run_dir / "records"
    records.mkdir(parents=True)
    report = summaries.Summary(profile.name, args.chaos, wall_s=0.0)
    say(f"{profile.description}; results in {run_dir}")

    with stores(args.redis) as urls:
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
        # The seeding here and the Locust processes started below call with this token.
        os.environ["SURGE_TOKEN"] = env["SURGE_TOKEN"]
        server = Server(env, address, run_dir)
        try:
            say(f"surge serve on {address} ready in {server.start():.1f}s; seeding")
            sale = seed(address, profile, opens_in_s=LOCUST_START_S + profile.browse_s)
            seed_path = run_dir / "seed.json"
            sale.write(seed_path)
            say(
                f"seeded {len(sale.members)} members, {len(sale.campaigns)} campaigns; "
                f"the sale opens in {sale.opens_at - time.time():.0f}s, lasts {profile.sale_s:.0f}s"
            )
            run_locust(args, profile, sale, server, run_dir, seed_path, records, report)
            say(f"Locust done; settling for {SETTLE_S:.0f}s (one hold deadline and a sweep)")
            time.sleep(SETTLE_S)
            report.campaigns = campaign_figures(address, sale)
        finally:
            code = server.stop()
        if code != 0:
            report.problems.append(f"surge serve exited with {code} on SIGTERM")
        say("auditing PostgreSQL and Redis, and every OK the users received")
        audit(env, records, run_dir, report)

    stats = run_dir / "locust_stats.csv"
    if stats.exists():
        summaries.summarize(report, summaries.read_stats(stats))
    failures = run_dir / "locust_failures.csv"
    if failures.exists():
        report.unexpected_codes = summaries.read_failure_codes(failures)
    else:
        report.problems.append("Locust wrote no stats")
    report.wall_s = time.monotonic() - began
    summaries.judge(report, max_failure_ratio=args.max_failure_ratio)
    text = summaries.render(report)
    (run_dir / "summary.txt").write_text(text + "\n")
    (run_dir / "summary.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(text)
    print(f"reports: {run_dir}/report.html, {run_dir}/locust_stats.csv, {run_dir}/audit.txt")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
