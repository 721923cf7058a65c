from __future__ import annotations

from loyalty.v1 import redemption_pb2
from tests.factories import Api


async def test_one_redemption_commits_and_debits(api: Api) -> None:
    member = await api.member(points=1000)
    campaign = await api.campaign(units=10, points_price=300)

    response = await api.redeem(member.id, campaign.id, quantity=2)

    assert response.redemption.status == redemption_pb2.REDEMPTION_STATUS_COMMITTED
    assert response.redemption.points_total == 600
    assert len(response.redemption.redemption_code) == 19
    balance = await api.balance(member.id)
    assert (balance.balance, balance.held, balance.available) == (400, 0, 400)
    after = await api.get_campaign(campaign.id)
    assert (after.units_committed, after.units_held, after.units_remaining) == (2, 0, 8)
