"""Health, reflection, and draining on shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from server.app import SERVICE_NAMES, Stores
from tests.conftest import Running, StartServer
from tests.flashsale.helpers import outcomes


async def test_health_is_serving_for_every_service(server: Running) -> None:
    stub = health_pb2_grpc.HealthStub(server.channel)
    for name in ("", *SERVICE_NAMES):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_api(server: Running) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    services = set()
    async for reply in stub.ServerReflectionInfo(iter([request])):
        services |= {s.name for s in reply.list_services_response.service}
    assert set(SERVICE_NAMES) | {"grpc.health.v1.Health"} <= services
    assert "loyalty.v1.RedemptionService" in services


async def test_stop_goes_not_serving_then_drains_in_flight_redemptions(
    clean: Stores, start_server: StartServer
) -> None:
    running = await start_server()
    api = running.api
    campaign = await api.campaign(units=100, limit=100)
    member = await api.member(points=100_000)
    watch = health_pb2_grpc.HealthStub(running.channel).Watch(
        health_pb2.HealthCheckRequest(service="")
    )
    statuses = [(await watch.read()).status]

    calls = asyncio.gather(
        *(api.redeem(member.id, campaign.id) for _ in range(40)), return_exceptions=True
    )
    await asyncio.sleep(0.01)  # let the calls reach the server
    stopping = asyncio.create_task(running.app.stop())
    statuses.append((await watch.read()).status)
    results = await calls
    await stopping

    assert statuses == [
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    ]
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert ok, results
    async with await psycopg.AsyncConnection.connect(clean.database_url) as conn:
        row = await (
            await conn.execute(
                "SELECT units_committed FROM campaigns WHERE id = %s", (campaign.id,)
            )
        ).fetchone()
    assert row == (len(ok),)  # every OK answered is committed; nothing else is
    running.app.server = None  # already stopped


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_surge_serve_drains_on_sigterm_and_exits_cleanly(
    clean: Stores, start_server: StartServer, tmp_path: Path
) -> None:
    seeder = await start_server()  # only to seed data through the API
    campaign = await seeder.api.campaign(units=100, limit=100)
    member = await seeder.api.member(points=100_000)
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": clean.database_url,
        "REDIS_URL": clean.redis_url,
        "SURGE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SURGE_SHUTDOWN_GRACE_SECONDS": "5",
        "SURGE_METRICS_PORT": "0",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "serve", env=env, stdout=sink, stderr=sink
        )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 30
            while True:
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                assert time.monotonic() < deadline, "surge serve did not become SERVING"
                await asyncio.sleep(0.1)
            from tests.factories import Api

            api = Api(channel)
            calls = [api.redeem(member.id, campaign.id) for _ in range(30)]
            pending = asyncio.ensure_future(outcomes(calls))
            await asyncio.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            ok, _ = await pending
        code = await asyncio.wait_for(process.wait(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = log.read_text()
    assert code == 0, output
    assert "draining" in output and "stopped" in output
    committed = (await seeder.api.get_campaign(campaign.id)).units_committed
    assert committed == len(ok)
