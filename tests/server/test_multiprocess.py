"""Several server processes share one gRPC port (SO_REUSEPORT, grpc's default on Linux) and
one metrics directory: the /metrics of the process that bound the port counts them all."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from server.app import Stores
from tests import auth
from tests.auth import TEST_SECRET


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
