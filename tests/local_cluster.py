"""A real Redis Cluster on loopback for tests: 6 `redis-server --cluster-enabled yes`
processes (3 primaries, 3 replicas) in a temporary folder, on free ports.

It lives in tests/ rather than beside LocalStack (server/embedded.py) because only tests
start one: the embedded stack is `surge serve`'s single Redis, bound to a data directory it
checks ownership of, while this cluster is throwaway (no persistence, its folder deleted at
the end). Move it there when `surge stack` learns to start a cluster.

The processes are children of this one (no --daemonize), so `stop` knows exactly which
processes to end and waits for them; `start` stops whatever it started when it fails.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

PRIMARIES = 3
REPLICAS_PER_PRIMARY = 1


class ClusterError(RuntimeError):
    """The test cluster did not start; the message says why."""


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (held open together so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class LocalCluster:
    folder: Path
    ports: list[int] = field(default_factory=list)
    # How long a silent node takes to be declared failed (its replica is promoted soon after).
    node_timeout_ms: int = 5000
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", p) for p in self.ports]

    @property
    def url(self) -> str:
        """A seed node's URL, as redis-py's RedisCluster.from_url takes it."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    @property
    def service_url(self) -> str:
        """The URL the service takes (REDIS_URL): every node a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self, timeout_s: float = 60.0) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise ClusterError("redis-server / redis-cli not found: run `make setup`")
        count = PRIMARIES * (1 + REPLICAS_PER_PRIMARY)
        # Each node has a client port and a cluster bus port, all distinct.
        found = _free_ports(2 * count)
        self.ports, bus_ports = found[:count], found[count:]
        try:
            for port, bus in zip(self.ports, bus_ports, strict=True):
                self._processes.append(self._spawn(server, port, bus))
            deadline = time.monotonic() + timeout_s
            for port in self.ports:
                self._wait(lambda p=port: _ping(p), f"redis-server on {port}", deadline)
            try:
                create = subprocess.run(
                    [
                        cli,
                        "--cluster",
                        "create",
                        *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas",
                        str(REPLICAS_PER_PRIMARY),
                        "--cluster-yes",
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                    # What is left of the one deadline, not a fresh `timeout_s`.
                    timeout=max(0.1, deadline - time.monotonic()),
                )
            except subprocess.TimeoutExpired as timed_out:
                raise ClusterError(
                    f"redis-cli --cluster create did not finish within {timeout_s} s"
                ) from timed_out
            if create.returncode != 0:
                raise ClusterError(f"redis-cli --cluster create failed:\n{create.stdout[-2000:]}")
            for port in self.ports:
                self._wait(lambda p=port: _cluster_ok(p), f"cluster_state:ok on {port}", deadline)
            # Every node must know every other one (the gossip settles after `create`),
            # with its role, before a client's first CLUSTER SLOTS.
            self._wait(self._roles_settled, "3 primaries with 1 replica each", deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Ends every process this cluster started and waits for it; safe to call again."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()

    def slot_ranges(self) -> list[tuple[int, int, int]]:
        """(first slot, last slot, primary's port) for every range, from CLUSTER SLOTS."""
        raw: Any = None
        for port in self.ports:  # the first node that answers (a test may have killed one)
            with contextlib.suppress(redis.RedisError):
                raw = redis.Redis(port=port, socket_timeout=2).cluster("SLOTS")
                break
        if raw is None:
            raise ClusterError("no node of the cluster answers")
        if isinstance(raw, dict):  # parsed: {(first, last): {"primary": (host, port)}}
            return [(int(a), int(b), int(v["primary"][1])) for (a, b), v in raw.items()]
        return [(int(r[0]), int(r[1]), int(r[2][1])) for r in raw]

    def primary_of(self, key: str) -> int:
        """The port of the primary that owns `key`'s hash slot."""
        slot = key_slot(key.encode())
        return next(port for a, b, port in self.slot_ranges() if a <= slot <= b)

    def pids(self) -> list[int]:
        return [p.pid for p in self._processes]

    def kill(self, port: int) -> None:
        """SIGKILLs the node on `port` (no shutdown, no save): a primary that dies."""
        process = self._processes[self.ports.index(port)]
        process.kill()
        process.wait()

    def _spawn(self, server: str, port: int, bus: int) -> subprocess.Popen[bytes]:
        node_dir = self.folder / str(port)
        node_dir.mkdir(parents=True)
        log = node_dir / "redis.log"
        return subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--cluster-port",
                str(bus),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(node_dir),
                "--logfile",
                str(log),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--save",
                "",
                "--appendonly",
                "no",
                # A replica's first sync starts at once rather than after 5 s: until it is
                # synced, it would not take over from a failed primary.
                "--repl-diskless-sync-delay",
                "0",
                "--maxmemory",
                "256mb",
                "--maxmemory-policy",
                "noeviction",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _roles_settled(self) -> bool:
        for port in self.ports:
            try:
                nodes = redis.Redis(port=port, socket_timeout=2).cluster("NODES")
            except redis.RedisError:
                return False
            flags = [str(node["flags"]) for node in nodes.values()]  # redis-py parses it
            masters = [f for f in flags if "master" in f.split(",")]
            replicas = [f for f in flags if "slave" in f.split(",")]
            if len(masters) != PRIMARIES or len(replicas) != PRIMARIES * REPLICAS_PER_PRIMARY:
                return False
        return True

    def _wait(self, check: object, what: str, deadline: float) -> None:
        assert callable(check)
        while time.monotonic() < deadline:
            dead = [p for p in self._processes if p.poll() is not None]
            if dead:
                raise ClusterError(f"a redis-server exited while waiting for {what}")
            if check():
                return
            time.sleep(0.1)
        raise ClusterError(f"timed out waiting for {what}")


def _ping(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
    except redis.ConnectionError:
        return False


def _cluster_ok(port: int) -> bool:
    try:
        info = redis.Redis(port=port, socket_timeout=2).cluster("INFO")
    except redis.RedisError:
        return False
    if isinstance(info, dict):
        return str(info.get("cluster_state")) == "ok"
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


@contextlib.contextmanager
def local_cluster(node_timeout_ms: int = 5000) -> Iterator[LocalCluster]:
    """A started cluster in a temporary folder; stopped and deleted at the end, whatever
    happens in between."""
    folder = Path(tempfile.mkdtemp(prefix="surge-cluster-"))
    cluster = LocalCluster(folder, node_timeout_ms=node_timeout_ms)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
