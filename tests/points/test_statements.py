"""ListLedgerEntries: the member's statement, newest first, paged and filtered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from loyalty.v1 import common_pb2, member_pb2, redemption_pb2
from tests.conftest import Running
from tests.factories import failure, ts
from tests.points.helpers import earn

EARN = member_pb2.LEDGER_ENTRY_KIND_EARN
REDEEM = member_pb2.LEDGER_ENTRY_KIND_REDEEM
REFUND = member_pb2.LEDGER_ENTRY_KIND_REFUND

# Cancellable after commit: no code is issued (a virtual good's code is final).
SERVICE = common_pb2.ITEM_KIND_SERVICE


def listing(member_id: str, **kw: object) -> member_pb2.ListLedgerEntriesRequest:
    return member_pb2.ListLedgerEntriesRequest(member_id=member_id, **kw)  # type: ignore[arg-type]


async def test_statement_pages_newest_first_with_balance_after(server: Running) -> None:
    api = server.api
    member = await api.member()
    for points in (100, 200, 300):
        await earn(server, member.id, points)
    campaign = await api.campaign(points_price=250, kind=SERVICE)
    redeemed = (await api.redeem(member.id, campaign.id)).redemption
    await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(redemption_id=redeemed.id, member_id=member.id)
    )

    first = await api.members.ListLedgerEntries(listing(member.id, page_size=3))
    second = await api.members.ListLedgerEntries(
        listing(member.id, page_size=3, page_token=first.next_page_token)
    )
    entries = [*first.entries, *second.entries]

    assert second.next_page_token == ""
    assert [(e.kind, e.amount, e.balance_after) for e in entries] == [
        (REFUND, 250, 600),
        (REDEEM, -250, 350),
        (EARN, 300, 600),
        (EARN, 200, 300),
        (EARN, 100, 100),
    ]
    assert entries[0].reference == entries[1].reference == f"redemption:{redeemed.id}"
    assert all(e.reason and e.create_time.seconds for e in entries)


async def test_statement_filters_by_kind_and_time(server: Running) -> None:
    api = server.api
    member = await api.member()
    await earn(server, member.id, 100)
    campaign = await api.campaign(points_price=40, kind=SERVICE)
    await api.redeem(member.id, campaign.id)
    now = datetime.now(UTC)

    redeems = await api.members.ListLedgerEntries(listing(member.id, kinds=[REDEEM]))
    earns_or_redeems = await api.members.ListLedgerEntries(listing(member.id, kinds=[EARN, REDEEM]))
    future = await api.members.ListLedgerEntries(
        listing(member.id, start_time=ts(now + timedelta(minutes=1)))
    )
    past = await api.members.ListLedgerEntries(
        listing(
            member.id,
            start_time=ts(now - timedelta(hours=1)),
            end_time=ts(now + timedelta(minutes=1)),
        )
    )

    assert [e.amount for e in redeems.entries] == [-40]
    assert len(earns_or_redeems.entries) == 2
    assert list(future.entries) == []
    assert len(past.entries) == 2


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (listing("nope"), "member_id"),
        (listing(str(uuid.uuid4()), page_size=101), "page_size"),
        (listing(str(uuid.uuid4()), page_token="garbage!"), "page_token"),
        (listing(str(uuid.uuid4()), kinds=[99]), "kinds"),
        (
            listing(
                str(uuid.uuid4()),
                start_time=ts(datetime(2030, 1, 2, tzinfo=UTC)),
                end_time=ts(datetime(2030, 1, 1, tzinfo=UTC)),
            ),
            "end_time",
        ),
    ],
)
async def test_bad_statement_requests_name_the_field(
    server: Running, request_: member_pb2.ListLedgerEntriesRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await server.api.members.ListLedgerEntries(request_)
    assert failure(bad.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(bad.value).field == field


async def test_statement_of_an_unknown_member_is_not_found(server: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await server.api.members.ListLedgerEntries(listing(str(uuid.uuid4())))
    assert failure(missing.value).code == grpc.StatusCode.NOT_FOUND
