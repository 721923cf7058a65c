"""The test cluster itself (tests/local_cluster.py): every slot served, every primary
reachable through redis-py's asyncio RedisCluster, every process gone after stop."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import RedisCluster

from tests import local_cluster
from tests.local_cluster import PRIMARIES, LocalCluster


def test_every_slot_is_served(redis_cluster: LocalCluster) -> None:
    ranges = sorted(redis_cluster.slot_ranges())
    covered = sum(b - a + 1 for a, b, _ in ranges)
    assert covered == 16384
    assert ranges[0][0] == 0 and ranges[-1][1] == 16383
    assert all(prev[1] + 1 == nxt[0] for prev, nxt in itertools.pairwise(ranges))
    assert len({port for _, _, port in ranges}) == PRIMARIES


async def test_a_key_on_each_primary_is_reachable(redis_cluster: LocalCluster) -> None:
    # One hash-tagged key per primary, found by the slot it hashes to.
    wanted: dict[int, str] = {}
    n = 0
    while len(wanted) < PRIMARIES:
        key = "{campaign:" + str(n) + "}"
        wanted.setdefault(redis_cluster.primary_of(key), key)
        n += 1
    client = RedisCluster.from_url(redis_cluster.url)
    try:
        for port, key in wanted.items():
            assert await client.set(key, str(port), ex=60)
            assert await client.get(key) == str(port).encode()
            # It really is on that primary, not merely somewhere.
            assert redis.Redis(port=port).get(key) == str(port).encode()
            await client.delete(key)
        primaries = {node.port for node in client.get_primaries()}
        assert primaries == set(wanted)
    finally:
        await client.aclose()


def test_stop_leaves_no_process() -> None:
    folder = Path(tempfile.mkdtemp(prefix="surge-cluster-test-"))
    cluster = LocalCluster(folder)
    try:
        cluster.start()
        pids = cluster.pids()
        assert len(pids) == 2 * PRIMARIES
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_a_failed_start_leaves_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cluster never reports ok: fails at once rather than after a timeout, so the test
    # does not depend on how fast `redis-cli --cluster create` is on a loaded machine.
    def never_ok(port: int) -> bool:
        raise local_cluster.ClusterError(f"cluster_state:ok never reached on {port}")

    monkeypatch.setattr(local_cluster, "_cluster_ok", never_ok)
    spawned: list[int] = []
    spawn = LocalCluster._spawn

    def recording(self: LocalCluster, server: str, port: int, bus: int) -> Any:
        process = spawn(self, server, port, bus)
        spawned.append(process.pid)
        return process

    monkeypatch.setattr(LocalCluster, "_spawn", recording)
    folder = Path(tempfile.mkdtemp(prefix="surge-cluster-test-"))
    try:
        with pytest.raises(local_cluster.ClusterError, match="cluster_state:ok"):
            LocalCluster(folder).start(timeout_s=60)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert len(spawned) == 2 * PRIMARIES
    assert not any(Path(f"/proc/{pid}").exists() for pid in spawned)
