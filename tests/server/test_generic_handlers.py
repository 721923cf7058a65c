"""Surge's services reach the server as generic handlers only: grpc.aio does O(registered
methods) work on every call that arrives (server/generic_handlers.py), so none is
registered per method, and every method is still served."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio._server as aio_server
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loyalty.v1 import member_pb2
from server.generic_handlers import GenericHandlersOnly
from tests.conftest import StartServer


async def test_no_method_is_registered_and_every_service_answers(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[str] = []
    original = aio_server.Server.add_registered_method_handlers

    def spy(self: Any, service: str, handlers: dict[str, Any]) -> None:
        registered.append(service)
        original(self, service, handlers)

    monkeypatch.setattr(aio_server.Server, "add_registered_method_handlers", spy)
    running = await start_server()
    assert registered == []
    # Served through the generic handlers: one of ours, health, and an unknown method.
    member = await running.api.members.CreateMember(
        member_pb2.CreateMemberRequest(display_name="Generic")
    )
    assert member.id
    reply = await health_pb2_grpc.HealthStub(running.channel).Check(
        health_pb2.HealthCheckRequest(service="")
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    unknown: Any = running.channel.unary_unary("/loyalty.v1.MemberService/NoSuchMethod")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await unknown(b"")
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_generic_handlers_pass_through_and_registrations_do_not() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.generic: list[Any] = []

        def add_generic_rpc_handlers(self, handlers: Any) -> None:
            self.generic.extend(handlers)

        def add_registered_method_handlers(self, *_: Any) -> None:
            raise AssertionError("a per-method registration reached the server")

    server = Recorder()
    only = GenericHandlersOnly(server)  # type: ignore[arg-type]
    handler = grpc.method_handlers_generic_handler("x.Y", {})
    only.add_generic_rpc_handlers((handler,))
    only.add_registered_method_handlers("x.Y", {"Z": object()})
    assert server.generic == [handler]
