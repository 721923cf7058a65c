"""Several server processes share one gRPC port (SO_REUSEPORT, grpc's default on Linux) and
one metrics directory: the /metrics of the process that bound the port counts them all. One
of them leads (runs the background jobs), and another takes over when it is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from server.app import App, Stores
from tests import auth
from tests.auth import TEST_SECRET
from tests.conftest import TEST_SETTINGS, Running
from tests.factories import Api, key
from tests.flashsale.test_recovery import hold_as_a_dying_process_would


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serving(port: int) -> None:
    deadline = time.monotonic() + 30
    async with auth.channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                return
            except grpc.aio.AioRpcError:
                assert time.monotonic() < deadline, "servers did not start"
                await asyncio.sleep(0.1)


async def test_two_processes_on_one_port_report_through_one_metrics_endpoint(
    clean: Stores, tmp_path: Path
) -> None:
    grpc_port, metrics_port = _free_port(), _free_port()
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": clean.database_url,
        "REDIS_URL": clean.redis_url,
        "SURGE_JWT_SECRET": TEST_SECRET.decode(),
        "SURGE_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
        "SURGE_METRICS_PORT": str(metrics_port),
        "SURGE_ACCESS_LOG": "off",
        "SURGE_DRAIN_SECONDS": "0",  # no load balancer to tell
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    processes = []
    for i in range(2):
        with (tmp_path / f"serve-{i}.log").open("wb") as sink:
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "server.cli", "serve", env=env, stdout=sink, stderr=sink
                )
            )
    try:
        await _serving(grpc_port)
        await asyncio.sleep(1.0)  # both bound: the second one too
        calls = 200
        for _ in range(calls):
            # A fresh connection per call, so the kernel spreads them over both processes.
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url, timeout=5).read().decode()
        )
    finally:
        for p in processes:
            p.terminate()
        codes = [await asyncio.wait_for(p.wait(), 20) for p in processes]
    handled = sum(
        s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == "grpc_server_handled_total"
        and s.labels.get("grpc_service") == "grpc.health.v1.Health"
        and s.labels.get("grpc_code") == "OK"
    )
    names = {s.name for family in text_string_to_metric_families(body) for s in family.samples}
    files = sorted(f.name for f in multiproc.iterdir())
    assert codes == [0, 0]
    assert handled >= calls  # + the start-up probes; all counted through one endpoint
    assert sum(name.startswith("counter_") for name in files) == 2  # both processes wrote
    # prometheus_client cannot add up process collectors across processes: none is served
    # (docs/metrics-contract.md); the build info is a gauge in the shared files.
    assert not {n for n in names if n.startswith(("process_", "python_"))}
    assert "surge_build_info" in names
    assert not {n for n in names if n.endswith("_created")}
    # One series per process (`pid`), and one of them leads.
    leaders = [
        s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == "surge_leader"
    ]
    assert sorted(leaders) == [0.0, 1.0]


def _leads(log: Path, pid: int) -> bool:
    return f":{pid} runs the background jobs" in log.read_text()


async def test_when_the_leader_is_killed_another_process_takes_over_and_sweeps(
    clean: Stores, tmp_path: Path
) -> None:
    interval = 0.5
    ports = [_free_port(), _free_port()]
    logs = [tmp_path / "serve-0.log", tmp_path / "serve-1.log"]
    processes = []
    for port, log in zip(ports, logs, strict=True):
        env = {
            **os.environ,
            "DATABASE_URL": clean.database_url,
            "REDIS_URL": clean.redis_url,
            "SURGE_JWT_SECRET": TEST_SECRET.decode(),
            "SURGE_GRPC_ADDRESS": f"127.0.0.1:{port}",
            "SURGE_METRICS_PORT": "0",
            "SURGE_ACCESS_LOG": "off",
            "SURGE_DRAIN_SECONDS": "0",
            "SURGE_SWEEP_INTERVAL_SECONDS": str(interval),
        }
        with log.open("wb") as sink:
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "server.cli", "serve", env=env, stdout=sink, stderr=sink
                )
            )
        await _serving(port)  # the first one leads: it took the lock before serving
    # A lapsed hold is made by this test's own App, never started (so it never leads).
    maker = App(TEST_SETTINGS, clean)
    try:
        first, second = processes
        assert _leads(logs[0], first.pid), logs[0].read_text()
        async with auth.channel(f"127.0.0.1:{ports[1]}") as channel:
            api = Api(channel)
            campaign = await api.campaign(units=1, points_price=100)
            member = await api.member(points=100)
            await maker.pool.open(wait=True)
            await maker.campaign_gate.load_scripts()
            await maker.points_gate.load_scripts()
            deadline_ms = await hold_as_a_dying_process_would(
                Running(maker, api, channel), member.id, campaign.id, key()
            )
            await asyncio.sleep(2 * interval)
            assert not _leads(logs[1], second.pid)

            first.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await first.wait()
            # The follower tries every interval: two of them, plus a margin for a busy host.
            while not _leads(logs[1], second.pid):
                assert time.monotonic() - killed < 2 * interval + 1.0, logs[1].read_text()
                await asyncio.sleep(0.02)

            # The new leader sweeps: the hold goes within its deadline plus one sweep.
            limit = deadline_ms / 1000 + interval + 1.0
            while (await api.get_campaign(campaign.id)).units_held:
                assert time.time() < limit, logs[1].read_text()
                await asyncio.sleep(0.05)
            assert (await api.balance(member.id)).available == 100
    finally:
        await maker.calls.aclose()
        await maker.redis.aclose()
        await maker.pool.close()
        for p in processes:
            if p.returncode is None:
                p.terminate()
        codes = [await asyncio.wait_for(p.wait(), 20) for p in processes]
    assert codes == [-signal.SIGKILL, 0]
