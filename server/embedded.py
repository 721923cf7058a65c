"""A local Redis and PostgreSQL started from their binaries: the embedded default of
`surge serve` and the stores of the test suite. Nothing here runs in production, where
REDIS_URL and DATABASE_URL point at managed servers.

PostgreSQL refuses to run as root, so as root we run it as the `postgres` system user,
with a data directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

DATABASE = "surge"
SUPERUSER = "surge"


class EmbeddedError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalStack:
    data_dir: Path
    redis_port: int
    postgres_port: int

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def database_url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.postgres_port}/{DATABASE}"

    def start(self) -> None:
        """Starts whatever is not running yet; safe to call again."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o755)
        self._start_redis()
        self._start_postgres()

    def stop(self) -> None:
        if (self.redis_dir / "redis.pid").exists():
            # SHUTDOWN drops the connection on success; a refused one means already gone.
            with contextlib.suppress(redis.ConnectionError):
                redis.Redis(port=self.redis_port, socket_timeout=2).shutdown(nosave=True)
            (self.redis_dir / "redis.pid").unlink(missing_ok=True)
        if (self.postgres_dir / "postmaster.pid").exists():
            _as_postgres(
                [_pg_bin("pg_ctl"), "-D", str(self.postgres_dir), "-m", "fast", "-w", "stop"]
            )

    def _start_redis(self) -> None:
        if _redis_answers(self.redis_port):
            return
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        server = shutil.which("redis-server")
        if server is None:
            raise EmbeddedError(
                "redis-server not found: run `make setup` (apt-get install redis-server)"
            )
        # No persistence: Redis is rebuilt from PostgreSQL (lazily, or by `surge rebuild-cache`).
        subprocess.run(
            [
                server,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.redis_dir / "redis.pid"),
                "--logfile",
                str(self.redis_dir / "redis.log"),
                "--dir",
                str(self.redis_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                # As production should run it: a limit, and full means refusing writes
                # (UNAVAILABLE) rather than evicting live gate keys.
                "--maxmemory",
                "1gb",
                "--maxmemory-policy",
                "noeviction",
            ],
            check=True,
        )
        _wait_until(
            lambda: _redis_answers(self.redis_port), "redis-server", self.redis_dir / "redis.log"
        )

    def _start_postgres(self) -> None:
        pgdata = self.postgres_dir
        if not (pgdata / "PG_VERSION").exists():
            pgdata.mkdir(parents=True, exist_ok=True)
            _give_to_postgres(pgdata)
            _as_postgres(
                [
                    _pg_bin("initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                ]
            )
        if not _postgres_answers(self.postgres_port):
            log = pgdata / "server.log"
            options = (
                f"-p {self.postgres_port} -c listen_addresses=127.0.0.1 "
                "-c unix_socket_directories='' -c max_connections=200"
            )
            _as_postgres(
                [
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(pgdata),
                    "-l",
                    str(log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
        with psycopg.connect(
            f"postgresql://{SUPERUSER}@127.0.0.1:{self.postgres_port}/postgres", autocommit=True
        ) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if exists.fetchone() is None:
                conn.execute(f"CREATE DATABASE {DATABASE}")


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key)
    if not candidates:
        raise EmbeddedError(f"{name} not found: run `make setup` (apt-get install postgresql)")
    return candidates[-1]


def _version_key(path: str) -> int:
    try:
        return int(Path(path).parts[-3])
    except ValueError:
        return 0


def _as_postgres(cmd: list[str]) -> None:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EmbeddedError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")


def _give_to_postgres(path: Path) -> None:
    """As root, hand the data directory to the postgres user, who must also reach it."""
    if os.geteuid() != 0:
        return
    shutil.chown(path, user="postgres", group="postgres")
    path.chmod(0o700)
    probe = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-w", str(path)], check=False
    )
    if probe.returncode != 0:
        raise EmbeddedError(
            f"the postgres user cannot reach {path}: set SURGE_DATA_DIR to a directory "
            "whose parents are world-traversable"
        )


def _redis_answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
    except redis.ConnectionError:
        return False


def _postgres_answers(port: int) -> bool:
    try:
        psycopg.connect(
            f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres", connect_timeout=2
        ).close()
        return True
    except psycopg.OperationalError:
        return False


def _wait_until(check: Callable[[], bool], what: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise EmbeddedError(f"{what} did not start within {timeout}s:\n{tail}")
