"""The edge of the stock: the last unit, and a quantity that straddles it."""

from __future__ import annotations

import grpc
import pytest

from tests.conftest import Running
from tests.factories import failure
from tests.flashsale.helpers import settled_audit


async def test_the_last_unit_sells_once(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=3, limit=3)
    buyer, late = await api.member(points=10_000), await api.member(points=10_000)
    await api.redeem(buyer.id, campaign.id, quantity=2)

    last = await api.redeem(buyer.id, campaign.id, quantity=1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(late.id, campaign.id, quantity=1)

    assert last.redemption.quantity == 1
    f = failure(refused.value)
    assert (f.code, f.reason, f.metadata["units_remaining"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SOLD_OUT",
        "0",
    )
    assert (await api.get_campaign(campaign.id)).units_committed == 3
    assert (await settled_audit(server)).ok


async def test_a_quantity_straddling_the_boundary_is_refused_whole(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=5, limit=5)
    first, member = await api.member(points=10_000), await api.member(points=10_000)
    await api.redeem(first.id, campaign.id, quantity=3)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redeem(member.id, campaign.id, quantity=3)
    fits = await api.redeem(member.id, campaign.id, quantity=2)

    f = failure(refused.value)
    assert (f.reason, f.metadata["units_remaining"]) == ("SOLD_OUT", "2")
    assert fits.redemption.quantity == 2
    after = await api.get_campaign(campaign.id)
    assert (after.units_committed, after.units_remaining) == (5, 0)
    assert (await api.balance(member.id)).balance == 10_000 - 200
    assert (await settled_audit(server)).ok
