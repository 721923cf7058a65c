"""The request id comes back to the client as `x-request-id` in the response's trailing
metadata, on every answer: OK, a domain error, an unauthenticated call, a shed one."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from grpc_health.v1.health_pb2 import HealthCheckRequest
from grpc_health.v1.health_pb2_grpc import HealthStub

from loyalty.v1 import member_pb2, member_pb2_grpc
from server.interceptors import REQUEST_ID_HEADER
from tests.conftest import Running, StartServer
from tests.factories import failure


def echoed(metadata: grpc.aio.Metadata | None) -> list[str]:
    return [str(v) for k, v in metadata or () if k == REQUEST_ID_HEADER]


async def test_ok_answer_echoes_the_clients_request_id(server: Running) -> None:
    call = server.api.members.CreateMember(
        member_pb2.CreateMemberRequest(display_name="Ann"),
        metadata=((REQUEST_ID_HEADER, "gw-42"),),
    )
    await call

    assert await call.code() == grpc.StatusCode.OK
    assert echoed(await call.trailing_metadata()) == ["gw-42"]


async def test_error_answer_echoes_the_request_id_beside_its_trailers(server: Running) -> None:
    call = server.api.members.GetMember(
        member_pb2.GetMemberRequest(member_id=str(uuid.uuid4())),
        metadata=((REQUEST_ID_HEADER, 'bad "id"'),),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call

    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert failure(refused.value).reason  # the ErrorInfo trailers are still there
    assert echoed(await call.trailing_metadata()) == ["badid"]  # cleaned, as logged


async def test_a_made_up_request_id_is_echoed_when_the_client_sent_none(
    server: Running,
) -> None:
    port = server.app.port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as bare:  # no credential
        call = member_pb2_grpc.MemberServiceStub(bare).CreateMember(
            member_pb2.CreateMemberRequest(display_name="Ann")
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        [rid] = echoed(await call.trailing_metadata())
        health = HealthStub(bare).Check(HealthCheckRequest())
        await health
        [health_rid] = echoed(await health.trailing_metadata())

    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert str(uuid.UUID(rid)) == rid and str(uuid.UUID(health_rid)) == health_rid
    assert rid != health_rid


async def test_a_shed_call_echoes_the_request_id_too(start_server: StartServer) -> None:
    server = await start_server(max_concurrent_calls=1)
    api = server.api
    campaign = await api.campaign(units=10)
    waiting, shed = await api.member(points=1000), await api.member(points=1000)
    await server.app.redis.client_pause(1000)  # the admitted call waits on Redis
    admitted = asyncio.ensure_future(api.redeem(waiting.id, campaign.id))
    await asyncio.sleep(0.2)

    call = api.redemptions.Redeem(
        __import__("loyalty.v1.redemption_pb2", fromlist=["x"]).RedeemRequest(
            member_id=shed.id, campaign_id=campaign.id, quantity=1, idempotency_key="shed-1"
        ),
        metadata=((REQUEST_ID_HEADER, "storm-7"),),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    await admitted

    assert failure(refused.value).reason == "OVERLOADED"
    assert echoed(await call.trailing_metadata()) == ["storm-7"]
