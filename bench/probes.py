"""What the benchmark reads around each load, besides the client's own timings: CPU time of
the server, Redis and PostgreSQL processes, Redis command counts (INFO commandstats) and
PostgreSQL statement counts (pg_stat_statements, when the extension can be loaded)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, with_children: bool = False) -> float:
    """User + system CPU of a process (and of its reaped children), 0 if it is gone."""
    f = _stat_fields(pid)
    if f is None:
        return 0.0
    # After the name: state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14.
    ticks = int(f[11]) + int(f[12])
    if with_children:
        ticks += int(f[13]) + int(f[14])
    return ticks / _TICKS


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            f = _stat_fields(int(entry.name))
            if f is not None and f[1] == str(pid):
                found.append(int(entry.name))
    return found


def pid_from_file(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(path.read_text().split()[0])
    return None


@dataclass(frozen=True)
class Processes:
    """Whose CPU is counted: the gRPC servers, Redis, and PostgreSQL (postmaster and every
    backend of the cluster)."""

    servers: dict[str, tuple[int, ...]]  # surge / naive -> pids (several: SO_REUSEPORT)
    redis_pid: int | None
    postmaster_pid: int | None

    def cpu(self) -> dict[str, float]:
        out = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.servers.items()}
        out["redis"] = cpu_seconds(self.redis_pid) if self.redis_pid else 0.0
        pg = 0.0
        if self.postmaster_pid:
            pg = cpu_seconds(self.postmaster_pid, with_children=True)
            pg += sum(cpu_seconds(child) for child in children(self.postmaster_pid))
        out["postgresql"] = pg
        return out


@dataclass
class Counters:
    """Server-side counts over one load."""

    redis_commands: dict[str, int] = field(default_factory=dict)  # command -> calls
    pg_statements: dict[str, dict[str, int]] = field(default_factory=dict)  # db -> query -> n


def redis_commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if isinstance(value, dict) and "calls" in value
    }


def redis_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: v for k, v in sorted(delta.items(), key=lambda kv: -kv[1]) if v > 0}


class StatementStats:
    """pg_stat_statements, if the cluster was started with it: counts reset before a load
    and read after it, per database."""

    def __init__(self, admin_url: str, databases: dict[str, str]) -> None:
        self._url = admin_url
        self._databases = databases  # system -> database name
        self.available = False
        with contextlib.suppress(psycopg.Error), psycopg.connect(admin_url, autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            c.execute("SELECT pg_stat_statements_reset()")
            self.available = True

    def reset(self) -> None:
        if self.available:
            with psycopg.connect(self._url, autocommit=True) as c:
                c.execute("SELECT pg_stat_statements_reset()")

    def read(self) -> dict[str, dict[str, int]]:
        if not self.available:
            return {}
        out: dict[str, dict[str, int]] = {}
        with psycopg.connect(self._url, autocommit=True) as c:
            rows = c.execute(
                "SELECT d.datname, s.query, s.calls FROM pg_stat_statements s "
                "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = ANY(%s) "
                "ORDER BY s.calls DESC",
                (list(self._databases.values()),),
            ).fetchall()
        names = {db: system for system, db in self._databases.items()}
        for datname, query, calls in rows:
            text = " ".join(str(query).split())
            out.setdefault(names[datname], {})[text[:120]] = int(calls)
        return out
