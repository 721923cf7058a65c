"""Dependency-aware health: while Redis or PostgreSQL cannot be reached, the API services
are NOT_SERVING (the overall "" stays SERVING: the process is alive), and SERVING again
when they answer; one WARNING per transition; surge_dependency_up follows."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from common.metrics import Metrics
from server.app import App, Stores
from server.readiness import DependencyProbe
from server.registry import SERVICE_NAMES
from tests import auth
from tests.conftest import TEST_SETTINGS

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """A redis-server of this test's own, stopped and started again on one port."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder = _free_port(), folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server not installed (make setup)"
        self.process = subprocess.Popen(
            [
                *(server, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


async def _wait_for(check: health_pb2_grpc.HealthStub, service: str, want: int) -> float:
    """Seconds until `service` reports `want` (fails after 5 s)."""
    started = time.monotonic()
    while True:
        reply = await check.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
        if reply.status == want:
            return time.monotonic() - started
        assert time.monotonic() - started < 5, f"{service!r} still {reply.status}"
        await asyncio.sleep(0.1)


async def test_redis_away_is_not_serving_for_the_api_and_serving_again_when_back(
    clean: Stores, own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="server.readiness")
    app = App(replace(TEST_SETTINGS), Stores(clean.database_url, own_redis.url))
    port = await app.start()
    channel = auth.channel(f"127.0.0.1:{port}")
    check = health_pb2_grpc.HealthStub(channel)
    redemption = "loyalty.v1.RedemptionService"
    try:
        await _wait_for(check, redemption, SERVING)
        assert app.metrics.dependency_up.labels("redis")._value.get() == 1

        own_redis.stop()
        assert await _wait_for(check, redemption, NOT_SERVING) < 3
        for name in SERVICE_NAMES:
            await _wait_for(check, name, NOT_SERVING)
        await _wait_for(check, "", SERVING)  # liveness: the process is fine
        assert app.metrics.dependency_up.labels("redis")._value.get() == 0
        assert app.metrics.dependency_up.labels("postgresql")._value.get() == 1
        await asyncio.sleep(2.5)  # more probes, still down: no more warnings

        own_redis.start()
        assert await _wait_for(check, redemption, SERVING) < 3
        assert app.metrics.dependency_up.labels("redis")._value.get() == 1
    finally:
        if own_redis.process is None:
            own_redis.start()
        await channel.close()
        await app.stop()

    warnings = [r.getMessage() for r in caplog.records if r.name == "server.readiness"]
    assert len(warnings) == 2, warnings  # one per transition, not one per probe
    assert warnings[0].startswith("redis unreachable") and "NOT_SERVING" in warnings[0]
    assert warnings[1] == "redis reachable again: health SERVING"


async def test_postgresql_unreachable_is_not_serving(
    clean: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    servicer = health.aio.HealthServicer()
    metrics = Metrics(CollectorRegistry())
    probe = DependencyProbe(
        redis_url=clean.redis_url,
        database_url=f"postgresql://surge@127.0.0.1:{_free_port()}/surge",  # refused
        health_servicer=servicer,
        services=SERVICE_NAMES,
        metrics=metrics,
    )
    try:
        await probe.probe_once()
        await probe.probe_once()
    finally:
        await probe.stop()
    reply = await servicer.Check(
        health_pb2.HealthCheckRequest(service="loyalty.v1.RedemptionService"), None
    )
    assert reply.status == NOT_SERVING
    assert metrics.dependency_up.labels("postgresql")._value.get() == 0
    assert metrics.dependency_up.labels("redis")._value.get() == 1
    down = [r.getMessage() for r in caplog.records if r.name == "server.readiness"]
    assert len(down) == 1 and down[0].startswith("postgresql unreachable (OperationalError")
