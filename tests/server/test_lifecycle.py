"""Health, reflection, and draining on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from server.app import Stores
from server.registry import SERVICE_NAMES
from tests import auth
from tests.auth import TEST_SECRET
from tests.conftest import Running, StartServer
from tests.flashsale.helpers import outcomes


async def test_health_is_serving_for_every_service(server: Running) -> None:
    stub = health_pb2_grpc.HealthStub(server.channel)
    for name in ("", *SERVICE_NAMES):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def reflection_call(server: Running, version: str) -> Any:
    """ServerReflectionInfo of reflection `version` ("v1" or "v1alpha"). v1's messages are
    v1alpha's field for field, so v1alpha's classes write and read what a v1 client sends."""
    return server.channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )


async def reflect(
    server: Running,
    version: str,
    *requests: reflection_pb2.ServerReflectionRequest,
    metadata: tuple[tuple[str, str], ...] | None = None,
) -> list[reflection_pb2.ServerReflectionResponse]:
    call = reflection_call(server, version)(
        iter(requests), metadata=auth.bearer(auth.token()) if metadata is None else metadata
    )
    return [reply async for reply in call]


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_lists_the_api(server: Running, version: str) -> None:
    [reply] = await reflect(
        server, version, reflection_pb2.ServerReflectionRequest(list_services="")
    )
    services = {s.name for s in reply.list_services_response.service}
    assert set(SERVICE_NAMES) | {"grpc.health.v1.Health"} <= services
    assert "loyalty.v1.RedemptionService" in services
    assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= (
        services
    )


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_describes_the_api_and_itself(server: Running, version: str) -> None:
    def files(reply: reflection_pb2.ServerReflectionResponse) -> dict[str, FileDescriptorProto]:
        assert not reply.HasField("error_response"), reply.error_response
        parsed = [
            FileDescriptorProto.FromString(raw)
            for raw in reply.file_descriptor_response.file_descriptor_proto
        ]
        return {f.name: f for f in parsed}

    api, common, v1, v1alpha = await reflect(
        server,
        version,
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="loyalty.v1.RedemptionService"
        ),
        reflection_pb2.ServerReflectionRequest(file_by_filename="loyalty/v1/common.proto"),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="grpc.reflection.v1.ServerReflection"
        ),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="grpc.reflection.v1alpha.ServerReflection"
        ),
    )

    redemption = files(api)["loyalty/v1/redemption.proto"]
    assert redemption.package == "loyalty.v1"
    assert "loyalty/v1/common.proto" in redemption.dependency  # the proto root is protos/
    assert redemption.options.go_package.endswith(";loyaltyv1")
    assert "Balance" in {m.name for m in files(common)["loyalty/v1/common.proto"].message_type}
    own = files(v1)["grpc/reflection/v1/reflection.proto"]
    assert own.package == "grpc.reflection.v1"
    [method] = own.service[0].method
    assert (method.input_type, method.output_type) == (
        ".grpc.reflection.v1.ServerReflectionRequest",
        ".grpc.reflection.v1.ServerReflectionResponse",
    )
    assert files(v1alpha)["grpc_reflection/v1alpha/reflection.proto"].package == (
        "grpc.reflection.v1alpha"
    )


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
        "SURGE_JWT_SECRET": TEST_SECRET.decode(),
        "SURGE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SURGE_SHUTDOWN_GRACE_SECONDS": "5",
        "SURGE_DRAIN_SECONDS": "0",  # the drain window has its own test below
        "SURGE_METRICS_PORT": "0",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "serve", env=env, stdout=sink, stderr=sink
        )
    try:
        async with auth.channel(f"127.0.0.1:{port}") as channel:
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


async def _serve(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "serve", env=env, stdout=sink, stderr=sink
        )


async def _status(health: health_pb2_grpc.HealthStub, service: str) -> Any:
    return (await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)).status


async def test_sigterm_says_not_serving_for_the_drain_window_while_calls_are_served(
    clean: Stores, start_server: StartServer, tmp_path: Path
) -> None:
    """Load balancers poll health: they must see NOT_SERVING while the process still
    answers, or the calls they send in between are refused."""
    seeder = await start_server()
    campaign = await seeder.api.campaign(units=100, limit=100)
    member = await seeder.api.member(points=100_000)
    port = _free_port()
    drain_s = 3.0
    env = {
        **os.environ,
        "DATABASE_URL": clean.database_url,
        "REDIS_URL": clean.redis_url,
        "SURGE_JWT_SECRET": TEST_SECRET.decode(),
        "SURGE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SURGE_DRAIN_SECONDS": str(drain_s),
        "SURGE_METRICS_PORT": "0",
    }
    log = tmp_path / "serve.log"
    process = await _serve(env, log)
    try:
        async with auth.channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    if await _status(health, "") == health_pb2.HealthCheckResponse.SERVING:
                        break
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.1)
            from tests.factories import Api

            api = Api(channel)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            while await _status(health, "") != health_pb2.HealthCheckResponse.NOT_SERVING:
                assert time.monotonic() - signalled < 1, "no NOT_SERVING within a second"
                await asyncio.sleep(0.05)
            redemption_service = "loyalty.v1.RedemptionService"
            assert await _status(health, redemption_service) == (
                health_pb2.HealthCheckResponse.NOT_SERVING
            )
            redeemed = await api.redeem(member.id, campaign.id)  # still served
            answered = time.monotonic() - signalled
            assert redeemed.redemption.quantity == 1
            assert answered < drain_s, answered
        code = await asyncio.wait_for(process.wait(), 30)
        exited = time.monotonic() - signalled
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = log.read_text()
    assert code == 0, output
    assert exited >= drain_s - 0.5, exited  # it served for the whole window
    assert "SURGE_DRAIN_SECONDS" in output and "stopped" in output
    assert (await seeder.api.get_campaign(campaign.id)).units_committed == 1
