"""The benchmark's stores and servers: a private Redis + PostgreSQL (server.embedded.LocalStack,
with pg_stat_statements when the cluster can load it, and a second database for the naive
peer) and gRPC servers in subprocesses (Surge, the naive peer, the bare floor), each ready
once its health check says SERVING."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console

from loadtest.credentials import with_credentials
from server.embedded import LocalStack
from server.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
NAIVE_DATABASE = "surge_naive"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def say(console: Console, message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")


# -- Stores ----------------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


def _enable_pg_stat_statements(stack: LocalStack) -> bool:
    """Restarts the cluster with pg_stat_statements preloaded; False if it cannot."""
    admin = with_database(stack.database_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'"
        ).fetchone()
    if found is None:  # no contrib module: run without statement counts
        return False
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        stack.stop()
        stack.start()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return True
    except Exception:  # could not load it after all: undo, run without statement counts
        with contextlib.suppress(Exception):
            stack.stop()
        auto_conf = stack.postgres_dir / "postgresql.auto.conf"
        lines = auto_conf.read_text().splitlines(keepends=True)
        auto_conf.write_text("".join(x for x in lines if "shared_preload_libraries" not in x))
        stack.start()
        return False


@contextlib.contextmanager
def local_stack(console: Console, *, keep: bool) -> Iterator[tuple[LocalStack, bool]]:
    folder = Path(tempfile.mkdtemp(prefix="surge-bench-"))
    folder.chmod(0o755)  # the postgres user must reach its data directory inside
    stack = LocalStack(folder / "stack", free_port(), free_port())
    try:
        stack.start()
        statements = _enable_pg_stat_statements(stack)
        with psycopg.connect(
            with_database(stack.database_url, "postgres"), autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {NAIVE_DATABASE}")
        migrate(stack.database_url)
        migrate(with_database(stack.database_url, NAIVE_DATABASE))
        say(
            console,
            f"stores up in {folder}: Redis :{stack.redis_port}, PostgreSQL "
            f":{stack.postgres_port} (pg_stat_statements {'on' if statements else 'off'})",
        )
        yield stack, statements
    finally:
        with contextlib.suppress(Exception):
            stack.stop()
        if keep:
            say(console, f"kept {folder} (server logs: surge.log, naive.log)")
        else:
            shutil.rmtree(folder, ignore_errors=True)


# -- Servers ---------------------------------------------------------------------------------


class ServerProcess:
    """A gRPC server in a subprocess, ready once its health check says SERVING."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.port = int(env["BENCH_PORT"])
        self.address = f"127.0.0.1:{self.port}"
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.tail()}")
                with contextlib.suppress(grpc.RpcError):
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not SERVING within {timeout}s: {self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        self._log_file.flush()
        return self.log.read_text()[-chars:] if self.log.exists() else ""

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log_file.close()
        return self.proc.returncode


@dataclass
class Servers:
    surges: list[ServerProcess]  # one, or several sharing a port (SO_REUSEPORT)
    naive: ServerProcess
    bare: ServerProcess  # bench.bare: the transport's own floor

    def stop(self) -> dict[str, int | None]:
        """Stops them all; each system's exit code (Surge's first failure, if any)."""
        codes = [x.stop() for x in self.surges]
        return {
            "surge": next((c for c in codes if c), codes[0]),
            "naive": self.naive.stop(),
            "bare": self.bare.stop(),
        }


def start_servers(
    stack: LocalStack, folder: Path, console: Console, *, surge_processes: int = 1
) -> Servers:
    """The Surge server (`surge_processes` processes sharing one port: gRPC sets SO_REUSEPORT
    and the kernel spreads connections over them), the naive peer and the bare floor."""
    # SURGE_* settings pass through to both servers (e.g. SURGE_COMMIT_WORKERS=4 make bench);
    # addresses, stores and the metrics port are the benchmark's own.
    base = dict(os.environ)
    surge_port, naive_port, bare_port = free_port(), free_port(), free_port()
    surge_env = with_credentials(
        base
        | {
            "BENCH_PORT": str(surge_port),
            "DATABASE_URL": stack.database_url,
            "REDIS_URL": stack.redis_url,
            "SURGE_GRPC_ADDRESS": f"127.0.0.1:{surge_port}",
            "SURGE_DATA_DIR": str(folder / "unused-data"),
            "SURGE_METRICS_PORT": "0",
            "SURGE_DRAIN_SECONDS": "0",  # nothing in front to tell before stopping
        }
    )
    os.environ["SURGE_TOKEN"] = surge_env["SURGE_TOKEN"]  # the loads call with it
    naive = ServerProcess(
        "naive",
        [
            sys.executable,
            "-m",
            "bench.naive",
            "--address",
            f"127.0.0.1:{naive_port}",
            "--database-url",
            with_database(stack.database_url, NAIVE_DATABASE),
        ],
        base
        | {"BENCH_PORT": str(naive_port), "SURGE_METRICS_PORT": "0"}
        | {k: v for k, v in surge_env.items() if k == "SURGE_JWT_SECRET"},  # same edge work
        folder / "naive.log",
    )
    bare = ServerProcess(
        "bare",
        [sys.executable, "-m", "bench.bare", "--address", f"127.0.0.1:{bare_port}"],
        base | {"BENCH_PORT": str(bare_port)},
        folder / "bare.log",
    )
    surges: list[ServerProcess] = []
    try:
        naive.wait_ready()
        bare.wait_ready()
        # One after another: each is SERVING before the next starts, so the health check
        # through the shared port can only be answered by those already up.
        for i in range(surge_processes):
            name = "surge" if i == 0 else f"surge-{i + 1}"
            surges.append(
                ServerProcess(
                    name,
                    [sys.executable, "-m", "server.cli", "serve"],
                    surge_env,
                    folder / f"{name}.log",
                )
            )
            surges[-1].wait_ready()
            if i > 0:
                time.sleep(1.0)  # its listener is up by then, even if a sibling answered
    except Exception:
        for server in (*surges, naive, bare):
            server.stop()
        raise
    pids = ", ".join(str(x.proc.pid) for x in surges)
    say(
        console,
        f"servers up: surge {surges[0].address} (pid {pids}), "
        f"naive {naive.address} (pid {naive.proc.pid}), bare {bare.address} "
        f"(pid {bare.proc.pid})",
    )
    return Servers(surges, naive, bare)
