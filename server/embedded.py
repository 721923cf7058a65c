"""A local Redis and PostgreSQL started from their binaries: the embedded default of
`surge serve` and the stores of the test suite. Nothing here runs in production, where
REDIS_URL and DATABASE_URL point at managed servers.

PostgreSQL refuses to run as root, so as root we run it as the `postgres` system user,
with a data directory that user owns.

A stack belongs to its data directory. The Redis and PostgreSQL answering on the stack's
ports say which directory they run from (`CONFIG GET dir`, `SHOW data_directory`); when it
is not this one (another checkout's `.data`, another SURGE_DATA_DIR) the stack refuses to
start, attach or stop them, rather than serve one directory's data under another's name.
Only `surge serve` (the embedded default) and `surge stack start` start a stack; the other
commands attach to a running one of their SURGE_DATA_DIR or refuse (server/cli.py).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
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
    """The embedded stack cannot start or stop; the message says why, in one line."""


class ForeignStack(EmbeddedError):
    """A store on this stack's port runs from another data directory (or is not ours)."""


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
        """Starts whatever is not running yet; safe to call again. Raises ForeignStack when
        a port is taken by another data directory's store (or by something else)."""
        self._check_ports()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o755)
        self._start_redis()
        self._start_postgres()

    def running(self) -> bool:
        """Whether this data directory's Redis and PostgreSQL both answer on the stack's
        ports (to attach to them). Raises ForeignStack when another directory's do."""
        self._check_ports()
        return _redis_answers(self.redis_port) and _postgres_answers(self.postgres_port)

    def stop(self) -> list[str]:
        """Stops this data directory's Redis and PostgreSQL; returns what it stopped. A
        store on the ports that another directory runs is left alone (ForeignStack)."""
        self._check_ports()
        stopped = []
        if _redis_answers(self.redis_port):
            # SHUTDOWN drops the connection on success; a refused one means already gone.
            with contextlib.suppress(redis.ConnectionError):
                redis.Redis(port=self.redis_port, socket_timeout=2).shutdown(nosave=True)
            stopped.append(f"Redis on port {self.redis_port}")
        (self.redis_dir / "redis.pid").unlink(missing_ok=True)
        if _postgres_answers(self.postgres_port):  # and it is ours: _check_ports
            _as_postgres(
                [_pg_bin("pg_ctl"), "-D", str(self.postgres_dir), "-m", "fast", "-w", "stop"]
            )
            stopped.append(f"PostgreSQL on port {self.postgres_port}")
        return stopped

    def _check_ports(self) -> None:
        """Whatever answers on the stack's ports must run from this data directory."""
        if _redis_answers(self.redis_port):
            owner = _redis_dir_of(self.redis_port)
            if owner is None or Path(owner).resolve() != self.redis_dir.resolve():
                raise ForeignStack(self._foreign("Redis", self.redis_port, owner, "REDIS"))
        elif _port_taken(self.redis_port):
            raise ForeignStack(self._foreign("Redis", self.redis_port, None, "REDIS"))
        if _postgres_answers(self.postgres_port):
            owner = _postgres_dir_of(self.postgres_port)
            if owner is None or Path(owner).resolve() != self.postgres_dir.resolve():
                raise ForeignStack(
                    self._foreign("PostgreSQL", self.postgres_port, owner, "POSTGRES")
                )
        elif _port_taken(self.postgres_port):
            raise ForeignStack(self._foreign("PostgreSQL", self.postgres_port, None, "POSTGRES"))

    def _foreign(self, what: str, port: int, owner: str | None, var: str) -> str:
        fix = f"set SURGE_EMBEDDED_{var}_PORT to a free port"
        if owner is None:
            return f"port {port} is taken by something that is not this data dir's {what}: {fix}"
        return (
            f"port {port} has the {what} of the data dir {Path(owner).parent}, not of "
            f"SURGE_DATA_DIR={self.data_dir}: stop that one (`SURGE_DATA_DIR=<its dir> surge "
            f"stack stop`) or {fix}"
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
        if _postgres_answers(self.postgres_port):
            self._create_database()
            return
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
        self._create_database()

    def _create_database(self) -> None:
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


def _redis_dir_of(port: int) -> str | None:
    """The working directory of the Redis on `port` (where it runs from), or None."""
    try:
        found = redis.Redis(port=port, socket_timeout=2, decode_responses=True).config_get("dir")
    except redis.RedisError:
        return None
    value = found.get("dir") if isinstance(found, dict) else None
    return str(value) if value else None


def _postgres_dir_of(port: int) -> str | None:
    """The data directory of the PostgreSQL on `port`, or None."""
    try:
        with psycopg.connect(
            f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres", connect_timeout=2
        ) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
    except psycopg.Error:
        return None
    return str(row[0]) if row else None


def _port_taken(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


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
