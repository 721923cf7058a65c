"""The mall's own ids for members (issue 17 item 5): CreateMember idempotent by request_id
(AIP-155), a taken external_ref named in ALREADY_EXISTS, and LookupMember by external_ref
on MemberService (operators) and RedemptionService (gateways)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from loyalty.v1 import member_pb2, member_pb2_grpc, redemption_pb2, redemption_pb2_grpc
from server import scopes
from tests import auth
from tests.conftest import Running
from tests.factories import Api, failure
from tests.lottery.helpers import pg_rows


def create(name: str = "Ann", ref: str = "", rid: str = "") -> member_pb2.CreateMemberRequest:
    return member_pb2.CreateMemberRequest(display_name=name, external_ref=ref, request_id=rid)


async def test_a_retried_create_answers_the_same_member_once(server: Running) -> None:
    api = server.api
    first = await api.members.CreateMember(create("Ann", "mall-1", "req-1"))
    again = await api.members.CreateMember(create("Ann", "mall-1", "req-1"))

    assert again == first
    assert pg_rows(server, "SELECT count(*) FROM members") == [(1,)]
    assert pg_rows(server, "SELECT kind, resource_id::text FROM create_requests") == [
        ("member", first.id)
    ]
    # The replayed member is live: it earns and redeems like any other.
    await api.earn(again.id, 30)
    assert (await api.balance(first.id)).balance == 30


async def test_a_request_id_without_an_external_ref_is_idempotent_too(api: Api) -> None:
    first = await api.members.CreateMember(create("Bo", rid="req-2"))
    again = await api.members.CreateMember(create("Bo", rid="req-2"))
    other = await api.members.CreateMember(create("Bo"))  # no request id: a new member
    assert again.id == first.id and other.id != first.id


async def test_a_request_id_reused_for_another_request_names_the_first_member(
    server: Running,
) -> None:
    api = server.api
    first = await api.members.CreateMember(create("Ann", "mall-2", "req-3"))
    for changed in (create("Anna", "mall-2", "req-3"), create("Ann", "mall-9", "req-3")):
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            await api.members.CreateMember(changed)
        f = failure(reused.value)
        assert (f.code, f.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
        assert f.metadata["member_id"] == first.id
        assert f.metadata["request_id"] == "req-3"
    assert pg_rows(server, "SELECT count(*) FROM members") == [(1,)]


async def test_concurrent_retries_create_one_member(server: Running) -> None:
    results = await asyncio.gather(
        *(server.api.members.CreateMember(create("Cy", "mall-3", "req-4")) for _ in range(10))
    )
    assert len({r.id for r in results}) == 1
    assert pg_rows(server, "SELECT count(*) FROM members") == [(1,)]


async def test_concurrent_creates_of_one_external_ref_name_the_winner(server: Running) -> None:
    outcomes = await asyncio.gather(
        *(server.api.members.CreateMember(create("Di", "mall-4")) for _ in range(6)),
        return_exceptions=True,
    )
    created = [o for o in outcomes if isinstance(o, member_pb2.Member)]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(created) == 1 and len(refused) == 5
    for error in refused:
        f = failure(error)
        assert (f.code, f.reason) == (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
        assert f.metadata == {
            "resource": "member",
            "field": "external_ref",
            "member_id": created[0].id,
        }


async def test_an_external_ref_reused_for_a_second_member_names_the_first(
    server: Running,
) -> None:
    api = server.api
    first = await api.members.CreateMember(create("Ed", "mall-5"))
    # A lost reply retried without a request id, or another member given the same id.
    for second in (create("Ed", "mall-5"), create("Flo", "mall-5", "req-5")):
        with pytest.raises(grpc.aio.AioRpcError) as dup:
            await api.members.CreateMember(second)
        f = failure(dup.value)
        assert (f.code, f.reason) == (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
        assert f.metadata["member_id"] == first.id
        assert first.id in f.message and "mall-5" in f.message
    # The refused request id made nothing: it is free for the request it was meant for.
    assert pg_rows(server, "SELECT count(*) FROM create_requests") == [(0,)]
    assert pg_rows(server, "SELECT count(*) FROM members") == [(1,)]


async def test_a_bad_request_id_is_invalid_and_creates_nothing(server: Running) -> None:
    for bad in ("x" * 129, " padded", "tab\there", "ünicode"):
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await server.api.members.CreateMember(create("Gus", "mall-6", bad))
        f = failure(invalid.value)
        assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, "request_id")
    assert pg_rows(server, "SELECT count(*) FROM members") == [(0,)]


async def test_lookup_by_external_ref_from_both_services(server: Running) -> None:
    api = server.api
    member = await api.members.CreateMember(create("Hal", "mall-7"))
    await api.members.CreateMember(create("Ivy", "mall-8"))

    by_operator = await api.members.LookupMember(
        member_pb2.LookupMemberRequest(external_ref="mall-7")
    )
    by_gateway = await api.redemptions.LookupMember(
        redemption_pb2.RedemptionServiceLookupMemberRequest(external_ref="mall-7")
    )
    assert by_operator == member and by_gateway == member


async def test_lookup_of_an_unknown_external_ref_is_not_found_naming_it(api: Api) -> None:
    await api.members.CreateMember(create("Jo", "mall-10"))
    for call in (
        api.members.LookupMember(member_pb2.LookupMemberRequest(external_ref="mall-11")),
        api.redemptions.LookupMember(
            redemption_pb2.RedemptionServiceLookupMemberRequest(external_ref="mall-11")
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await call
        f = failure(missing.value)
        assert f.code == grpc.StatusCode.NOT_FOUND
        assert f.metadata == {"resource": "member", "id": "mall-11", "field": "external_ref"}
        assert "external_ref 'mall-11'" in f.message


async def test_lookup_needs_an_external_ref(api: Api) -> None:
    for ref in ("", "   ", "x" * 129):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await api.members.LookupMember(member_pb2.LookupMemberRequest(external_ref=ref))
        f = failure(bad.value)
        assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, "external_ref")


async def test_a_gateway_looks_up_with_the_storefront_scope_only(server: Running) -> None:
    await server.api.members.CreateMember(create("Kim", "mall-12"))
    storefront = auth.bearer(auth.token([scopes.STOREFRONT]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.app.port}") as bare:
        found = await redemption_pb2_grpc.RedemptionServiceStub(bare).LookupMember(
            redemption_pb2.RedemptionServiceLookupMemberRequest(external_ref="mall-12"),
            metadata=storefront,
        )
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await member_pb2_grpc.MemberServiceStub(bare).LookupMember(
                member_pb2.LookupMemberRequest(external_ref="mall-12"), metadata=storefront
            )
    assert found.external_ref == "mall-12"
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
