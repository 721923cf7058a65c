"""The per-RPC messages that replaced shared ones (buf's RPC_REQUEST_RESPONSE_UNIQUE) keep the
shared message's fields, numbers and types: the bytes a client built with the old message are
read alike by the new one, and the other way round. An RPC's own message may add fields of
its own after them (EarnForPurchaseResponse's earn rules): an old reader skips those."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message

from loyalty.v1 import member_pb2, redemption_pb2

# (the message the RPCs used to share, the RPCs' own messages now)
SPLITS: list[tuple[type[Message], list[type[Message]]]] = [
    (
        member_pb2.EarnPointsResponse,
        [
            member_pb2.EarnForPurchaseResponse,
            member_pb2.EarnForTaskResponse,
            member_pb2.AdjustPointsResponse,
        ],
    ),
    (member_pb2.FreezeMemberRequest, [member_pb2.UnfreezeMemberRequest]),
    (
        member_pb2.AddBeneficiaryRequest,  # was BeneficiaryRequest
        [member_pb2.RemoveBeneficiaryRequest],
    ),
    (
        member_pb2.ListBeneficiariesResponse,
        [member_pb2.AddBeneficiaryResponse, member_pb2.RemoveBeneficiaryResponse],
    ),
    (  # was common.GetBalanceRequest
        member_pb2.MemberServiceGetBalanceRequest,
        [redemption_pb2.RedemptionServiceGetBalanceRequest],
    ),
]


def wire(message: type[Message]) -> list[tuple[str, int, int, bool, str]]:
    return [
        (
            f.name,
            f.number,
            f.type,
            f.is_repeated,
            f.message_type.full_name if f.message_type else "",
        )
        for f in message.DESCRIPTOR.fields
    ]


@pytest.mark.parametrize(
    ("shared", "own"), SPLITS, ids=[shared.DESCRIPTOR.name for shared, _ in SPLITS]
)
def test_own_messages_match_the_shared_one_on_the_wire(
    shared: type[Message], own: list[type[Message]]
) -> None:
    for message in own:
        kept = wire(message)[: len(wire(shared))]
        assert kept == wire(shared), message.DESCRIPTOR.name
        added = [f[1] for f in wire(message)[len(wire(shared)) :]]
        assert all(n > max(f[1] for f in wire(shared)) for n in added), message.DESCRIPTOR.name


def test_a_shared_message_reads_as_the_rpcs_own() -> None:
    old = member_pb2.EarnPointsResponse(ledger_entry_id="e", replayed=True, points=-5)
    old.balance.member_id = "m"
    new = member_pb2.AdjustPointsResponse.FromString(old.SerializeToString())
    assert (new.ledger_entry_id, new.replayed, new.points, new.balance.member_id) == (
        "e",
        True,
        -5,
        "m",
    )
