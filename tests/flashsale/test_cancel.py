"""Cancelling gives units and points back, once."""

from __future__ import annotations

import uuid

import grpc
import pytest

from loyalty.v1 import common_pb2, redemption_pb2
from tests.conftest import Running
from tests.factories import failure
from tests.flashsale.helpers import settled_audit

# Cancellable after commit: no code is issued (a virtual good's code is final).
SERVICE = common_pb2.ITEM_KIND_SERVICE


def cancel_request(redemption_id: str, member_id: str) -> redemption_pb2.CancelRedemptionRequest:
    return redemption_pb2.CancelRedemptionRequest(
        redemption_id=redemption_id, member_id=member_id, reason="changed my mind"
    )


async def test_cancel_returns_units_and_points_and_a_second_cancel_changes_nothing(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(units=2, points_price=400, kind=SERVICE)
    member, other = await api.member(points=1000), await api.member(points=1000)
    redeemed = (await api.redeem(member.id, campaign.id, quantity=2)).redemption

    cancelled = await api.redemptions.CancelRedemption(cancel_request(redeemed.id, member.id))
    after_first = (await api.get_campaign(campaign.id), await api.balance(member.id))
    again = await api.redemptions.CancelRedemption(cancel_request(redeemed.id, member.id))
    after_second = (await api.get_campaign(campaign.id), await api.balance(member.id))

    assert cancelled.status == again.status == redemption_pb2.REDEMPTION_STATUS_CANCELLED
    assert after_first == after_second
    assert after_first[0].units_remaining == 2 and after_first[0].units_committed == 0
    assert after_first[1].balance == 1000 and after_first[1].available == 1000
    # The units are sellable again, and the limit counts them as returned.
    assert (await api.redeem(other.id, campaign.id, quantity=2)).redemption.quantity == 2
    async with server.app.pool.connection() as conn:
        kinds = await (
            await conn.execute(
                "SELECT kind, amount FROM ledger_entries WHERE member_id = %s ORDER BY created_at",
                (member.id,),
            )
        ).fetchall()
    assert [k for k, _ in kinds] == ["earn", "redeem", "refund"]
    assert sum(a for _, a in kinds) == 1000
    assert (await settled_audit(server)).ok


async def test_only_the_owner_can_cancel(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=2)
    member, stranger = await api.member(points=1000), await api.member(points=1000)
    redeemed = (await api.redeem(member.id, campaign.id)).redemption

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redemptions.CancelRedemption(cancel_request(redeemed.id, stranger.id))

    assert failure(refused.value).code == grpc.StatusCode.NOT_FOUND
    assert (await api.get_campaign(campaign.id)).units_committed == 1


async def test_cancel_of_an_unknown_redemption_is_not_found(server: Running) -> None:
    member = await server.api.member()
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await server.api.redemptions.CancelRedemption(cancel_request(str(uuid.uuid4()), member.id))
    assert failure(missing.value).code == grpc.StatusCode.NOT_FOUND


async def test_a_virtual_redemption_whose_code_is_issued_cannot_be_cancelled(
    server: Running,
) -> None:
    """The code is the good: refunding the points would leave the member with both."""
    api = server.api
    campaign = await api.campaign(units=2, points_price=400)  # virtual: a code at commit
    member = await api.member(points=1000)
    redeemed = (await api.redeem(member.id, campaign.id)).redemption

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redemptions.CancelRedemption(cancel_request(redeemed.id, member.id))

    f = failure(refused.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "REDEMPTION_NOT_CANCELLABLE")
    assert f.metadata["because"] == "its code is issued"
    after = await api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(redemption_id=redeemed.id, member_id=member.id)
    )
    assert after.status == redemption_pb2.REDEMPTION_STATUS_COMMITTED
    assert after.redemption_code == redeemed.redemption_code != ""
    assert (await api.balance(member.id)).balance == 600
    assert (await api.get_campaign(campaign.id)).units_committed == 1
