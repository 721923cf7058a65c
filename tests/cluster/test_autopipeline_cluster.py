"""The auto-pipeline on a real Redis Cluster (common/autopipeline_cluster.py): a batch goes
out as one round trip per primary, and NOSCRIPT, a migrated slot (ASK, MOVED), a killed
primary and CLUSTERDOWN are handled without a script error.

The tests that change the cluster's slots or kill a node run on a cluster of their own
(module scope, a short cluster-node-timeout so a failover takes about 2 s), never on the
session's `redis_cluster`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import redis
import redis.exceptions
from prometheus_client import CollectorRegistry
from redis.asyncio import RedisCluster
from redis.crc import key_slot

from common.autopipeline import AutoPipeline
from common.autopipeline_cluster import ClusterAutoPipeline
from common.dependencies import failure_of
from common.metrics import Metrics
from server.errors import status_for
from tests.local_cluster import PRIMARIES, LocalCluster, local_cluster

COUNT = """local n = redis.call('INCRBY', KEYS[1], ARGV[1])
return {1, n}"""


def _url(cluster: LocalCluster) -> str:
    return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in cluster.ports[:2])


def _pipeline(cluster: LocalCluster, **options: Any) -> ClusterAutoPipeline:
    calls = AutoPipeline.connect(_url(cluster), metrics=Metrics(CollectorRegistry()), **options)
    assert isinstance(calls, ClusterAutoPipeline)
    return calls


def _script() -> Any:
    # Only its sha and source are used: the pipeline sends EVALSHA and, on NOSCRIPT, loads it.
    return redis.asyncio.Redis().register_script(COUNT)


def _keys_per_primary(cluster: LocalCluster, per: int) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    n = 0
    while len(found) < PRIMARIES or any(len(v) < per for v in found.values()):
        key = f"{{c:{n}}}"
        keys = found.setdefault(cluster.primary_of(key), [])
        if len(keys) < per:
            keys.append(key)
        n += 1
    return found


@pytest.fixture
async def flushed(redis_cluster: LocalCluster) -> AsyncIterator[LocalCluster]:
    client = RedisCluster.from_url(redis_cluster.url)
    await client.flushall()
    await client.aclose()
    yield redis_cluster


async def test_a_batch_goes_as_one_round_trip_per_primary(flushed: LocalCluster) -> None:
    calls = _pipeline(flushed)
    script = _script()
    per_node: list[tuple[int, int]] = []
    round_trip = calls._node_round_trip

    async def recorded(entry: Any, batch: list[Any]) -> None:
        per_node.append((int(entry.node.port), len(batch)))
        await round_trip(entry, batch)

    calls._node_round_trip = recorded  # type: ignore[method-assign,assignment]
    keys = _keys_per_primary(flushed, 4)
    for port in keys:  # the scripts are on every primary: no NOSCRIPT round trip
        redis.Redis(port=port).script_load(COUNT)
    await calls.call(script, [keys[next(iter(keys))][0]], [0])  # the slot map is loaded
    per_node.clear()

    ordered = [k for ks in keys.values() for k in ks]
    replies = await asyncio.gather(
        *(calls.call(script, [k], [i + 1]) for i, k in enumerate(ordered))
    )

    assert replies == [[1, i + 1] for i in range(len(ordered))]
    assert sorted(per_node) == sorted((port, 4) for port in keys), per_node
    for port, ks in keys.items():  # each value is on the primary that owns its slot
        assert [int(redis.Redis(port=port).get(k) or 0) for k in ks] == [
            ordered.index(k) + 1 for k in ks
        ]
    await calls.aclose()


async def test_noscript_after_a_script_flush_on_one_primary(flushed: LocalCluster) -> None:
    calls = _pipeline(flushed)
    script = _script()
    keys = _keys_per_primary(flushed, 2)
    for port in keys:
        redis.Redis(port=port).script_load(COUNT)
    flushed_port = next(iter(keys))
    redis.Redis(port=flushed_port).script_flush()

    ordered = [k for ks in keys.values() for k in ks]
    replies = await asyncio.gather(*(calls.call(script, [k], [1]) for k in ordered))

    assert replies == [[1, 1]] * len(ordered)  # each ran once, NOSCRIPT ones after a load
    assert all(redis.Redis(port=flushed_port).script_exists(script.sha))
    await calls.aclose()


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster these tests may break: slots moved, a primary killed, slots removed."""
    with local_cluster(node_timeout_ms=1000) as cluster:
        yield cluster


def _cmd(port: int, *words: Any) -> Any:
    return redis.Redis(port=port).execute_command(*words)  # type: ignore[no-untyped-call]


def _id(port: int) -> str:
    return str(_cmd(port, "CLUSTER", "MYID").decode())


async def test_a_migrating_then_moved_slot_answers_via_ask_and_moved(
    own_cluster: LocalCluster,
) -> None:
    calls = _pipeline(own_cluster)
    script = _script()
    old, new = "{mig}:old", "{mig}:new"
    slot = key_slot(old.encode())
    source = own_cluster.primary_of(old)
    target = next(p for _, _, p in own_cluster.slot_ranges() if p != source)
    assert await calls.call(script, [old], [1]) == [1, 1]  # on the source

    dst = redis.Redis(port=target)
    _cmd(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", _id(source))
    _cmd(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", _id(target))
    # Migrating: a key still on the source is answered there; a new key gets ASK.
    replies = await asyncio.gather(calls.call(script, [old], [1]), calls.call(script, [new], [5]))
    assert list(replies) == [[1, 2], [1, 5]]

    _cmd(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", old)
    for port in own_cluster.ports:  # every node learns the new owner
        # A replica refuses SETSLOT; it learns through its primary.
        with contextlib.suppress(redis.exceptions.ResponseError):
            _cmd(port, "CLUSTER", "SETSLOT", slot, "NODE", _id(target))
    # Moved: the pipeline's slot map still names the source, which answers MOVED.
    assert await calls.call(script, [old], [1]) == [1, 3]
    assert int(dst.get(old) or 0) == 3 and int(dst.get(new) or 0) == 5
    await calls.aclose()


def _wait_for_synced_replica(cluster: LocalCluster, primary: int) -> None:
    """A replica that never synced does not take over: wait for the primary's to be."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for port in cluster.ports:
            info = redis.Redis(port=port).info("replication")
            if info.get("master_port") == primary and info.get("master_link_status") == "up":
                return
        time.sleep(0.1)
    raise AssertionError(f"no synced replica of {primary}")


async def test_a_killed_primary_fails_within_the_deadline_then_its_replica_answers(
    own_cluster: LocalCluster,
) -> None:
    calls = _pipeline(own_cluster, timeout_s=1.0)
    script = _script()
    key = "{kill}"
    port = own_cluster.primary_of(key)
    redis.Redis(port=port).script_load(COUNT)
    assert await calls.call(script, [key], [1]) == [1, 1]
    _wait_for_synced_replica(own_cluster, port)
    os.kill(own_cluster.pids()[own_cluster.ports.index(port)], signal.SIGKILL)

    errors: list[BaseException] = []
    started = time.monotonic()
    while True:
        sent = time.monotonic()
        try:
            reply = await calls.call(script, [key], [1])
            break
        except Exception as e:  # each must be an UNAVAILABLE one
            assert failure_of(e) is not None, repr(e)
            assert time.monotonic() - sent < 1.0 + 0.5
            errors.append(e)
        assert time.monotonic() - started < 20, errors
    # The replica was promoted and answers (the INCRBY replicated before the kill, or not).
    assert reply[0] == 1 and reply[1] in (1, 2), reply
    await calls.aclose()


async def test_clusterdown_fails_the_call_unavailable(own_cluster: LocalCluster) -> None:
    calls = _pipeline(own_cluster, timeout_s=0.5)
    script = _script()
    key = "{down}"
    assert (await calls.call(script, [key], [1]))[0] == 1
    slot = key_slot(key.encode())
    for port in own_cluster.ports:  # no node serves the slot any more
        # The killed node, or a node that did not own it, refuses.
        with contextlib.suppress(redis.exceptions.RedisError):
            _cmd(port, "CLUSTER", "DELSLOTS", slot)

    started = time.monotonic()
    with pytest.raises(redis.exceptions.RedisError) as raised:
        await calls.call(script, [key], [1])

    assert isinstance(raised.value, redis.exceptions.ClusterDownError), repr(raised.value)
    failure = failure_of(raised.value)
    assert failure is not None and failure.condition == "cluster_down"
    status = status_for(raised.value)  # what the gRPC edge answers
    assert status is not None and status.code == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 0.5 + 0.5
    await calls.aclose()
