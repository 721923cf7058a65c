"""Guards against a caller asking too much, through a real channel: per-member and
per-credential rates, the bounded commit queue, message and metadata sizes."""

from __future__ import annotations

import asyncio

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from loyalty.v1 import member_pb2, redemption_pb2
from server.app import Stores
from server.config import ConfigError, Settings
from tests import auth
from tests.conftest import StartServer
from tests.factories import failure

pytestmark = pytest.mark.timeout(60)


def quota_subject(error: grpc.aio.AioRpcError) -> str:
    for name, value in error.trailing_metadata() or ():
        if name != rpc_status.GRPC_DETAILS_METADATA_KEY:
            continue
        for detail in status_pb2.Status.FromString(value).details:
            if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
                quota = error_details_pb2.QuotaFailure()
                detail.Unpack(quota)
                return str(quota.violations[0].subject)
    return ""


async def test_calls_naming_one_member_are_held_to_its_rate(start_server: StartServer) -> None:
    running = await start_server(member_calls_per_second=2.0, member_burst=3)
    api = running.api
    busy, other = await api.member(points=10), await api.member(points=10)
    await asyncio.sleep(0.6)  # the earn that gave them points took a token: it is back

    answers = []
    for _ in range(5):
        try:
            await api.balance(busy.id)
            answers.append("OK")
        except grpc.aio.AioRpcError as e:
            answers.append(failure(e).reason)
            refused = e

    assert answers[:3] == ["OK"] * 3
    assert "RATE_LIMITED" in answers[3:]
    f = failure(refused)
    assert f.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f.metadata == {"limit": "member", "calls_per_second": "2"}
    assert 0 < f.retry_delay_s <= 0.5
    assert quota_subject(refused) == f"member:{busy.id}"
    assert (await api.balance(other.id)).balance == 10  # another member is not held back
    # An earning system crediting the member is not its gateway traffic: not held back.
    for _ in range(5):
        await api.earn(busy.id, 1)
    await asyncio.sleep(0.6)  # a token comes back every 0.5 s
    assert (await api.balance(busy.id)).balance == 15


async def test_each_credential_is_held_to_its_rate(start_server: StartServer) -> None:
    running = await start_server(subject_calls_per_second=1.0, subject_burst=2)
    stub = running.api.members
    request = member_pb2.CreateMemberRequest(display_name="Bo")
    noisy = auth.bearer(auth.token(["operator"], subject="batch-job"))
    quiet = auth.bearer(auth.token(["operator"], subject="ops:alice"))

    await stub.CreateMember(request, metadata=noisy)
    await stub.CreateMember(request, metadata=noisy)
    with pytest.raises(grpc.aio.AioRpcError) as limited:
        await stub.CreateMember(request, metadata=noisy)
    created = await stub.CreateMember(request, metadata=quiet)

    f = failure(limited.value)
    assert (f.code, f.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert quota_subject(limited.value) == "subject:batch-job"
    assert created.id


async def test_a_full_commit_queue_refuses_before_holding_anything(
    start_server: StartServer, clean: Stores
) -> None:
    running = await start_server(commit_queue_max=1)
    api = running.api
    campaign = await api.campaign(units=10, limit=5)
    members = [await api.member(points=1000) for _ in range(4)]

    # The first redemption's commit waits on the campaign's row; the queue stays full.
    with psycopg.connect(clean.database_url) as blocker:
        blocker.execute("SELECT 1 FROM campaigns WHERE id = %s FOR UPDATE", (campaign.id,))
        first = asyncio.ensure_future(api.redeem(members[0].id, campaign.id))
        await asyncio.sleep(0.2)
        refused = []
        for m in members[1:]:
            with pytest.raises(grpc.aio.AioRpcError) as full:
                await api.redeem(m.id, campaign.id)
            refused.append(failure(full.value))
        held_meanwhile = (await api.get_campaign(campaign.id)).units_held
        blocker.rollback()
    redeemed = await first

    assert redeemed.redemption.status == redemption_pb2.REDEMPTION_STATUS_COMMITTED
    assert {(f.code, f.reason) for f in refused} == {
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "COMMIT_QUEUE_FULL")
    }
    assert all(f.retry_delay_s > 0 for f in refused)
    assert held_meanwhile == 1  # only the first one holds: the refused held nothing
    after = await api.get_campaign(campaign.id)
    assert (after.units_committed, after.units_held) == (1, 0)
    for m in members[1:]:
        assert (await api.balance(m.id)).held == 0
    counted = running.app.metrics.redemptions.labels("overloaded")._value.get()
    assert counted == len(refused)


async def test_a_message_past_the_limit_is_refused_by_grpc(start_server: StartServer) -> None:
    running = await start_server(max_message_bytes=2048)
    request = member_pb2.CreateMemberRequest(display_name="x" * 4000)
    with pytest.raises(grpc.aio.AioRpcError) as too_big:
        await running.api.members.CreateMember(request)
    assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_metadata_past_the_limit_is_refused_before_any_code_runs(
    start_server: StartServer,
) -> None:
    running = await start_server(max_metadata_bytes=4096)
    request = member_pb2.CreateMemberRequest(display_name="Cy")
    with pytest.raises(grpc.aio.AioRpcError) as too_big:
        await running.api.members.CreateMember(request, metadata=(("x-padding", "p" * 8000),))
    assert too_big.value.code() in (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,  # some gRPC versions report the stream reset as INTERNAL
    )
    assert (
        running.app.metrics.rpc_started.labels(
            "unary", "loyalty.v1.MemberService", "CreateMember"
        )._value.get()
        == 0
    )
    # A token of a few kilobytes and the usual headers fit.
    assert (await running.api.members.CreateMember(request)).id


def test_overload_settings() -> None:
    s = Settings.load(
        {
            "SURGE_MEMBER_CALLS_PER_SECOND": "0",
            "SURGE_SUBJECT_CALLS_PER_SECOND": "2.5",
            "SURGE_COMMIT_QUEUE_MAX": "10",
        }
    )
    assert (s.member_calls_per_second, s.subject_calls_per_second) == (0.0, 2.5)
    assert s.commit_queue_max == 10
    assert Settings.load({}).member_calls_per_second == 10.0
    for bad in ("-1", "nan", "inf", "fast"):
        with pytest.raises(ConfigError, match="SURGE_MEMBER_CALLS_PER_SECOND"):
            Settings.load({"SURGE_MEMBER_CALLS_PER_SECOND": bad})
    with pytest.raises(ConfigError, match="SURGE_MAX_MESSAGE_BYTES"):
        Settings.load({"SURGE_MAX_MESSAGE_BYTES": "10"})
