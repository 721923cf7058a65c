"""Many members racing for few units: exactly the allotment is sold, and every invariant holds."""

from __future__ import annotations

import random

from tests.conftest import Running
from tests.flashsale.helpers import outcomes, settled_audit


async def test_500_calls_from_100_members_sell_exactly_50_units(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=50, points_price=100, limit=5)
    members = [await api.member(points=10_000) for _ in range(100)]
    calls = [api.redeem(m.id, campaign.id) for m in members for _ in range(5)]
    random.shuffle(calls)

    ok, refused = await outcomes(calls)

    assert sum(r.redemption.quantity for r in ok) == 50
    assert len({r.redemption.id for r in ok}) == 50
    assert set(refused) == {"SOLD_OUT"} and refused["SOLD_OUT"] == 450
    after = await api.get_campaign(campaign.id)
    assert (after.units_committed, after.units_remaining, after.units_held) == (50, 0, 0)
    report = await settled_audit(server)
    assert report.ok, report.violations
    assert report.units_committed == 50 and report.redemptions == 50
    # Group commit: far fewer commits than redemptions.
    assert server.app.committer.batches < 50


async def test_audit_catches_an_over_redemption(server: Running) -> None:
    """The audit itself can fail: break an invariant behind the service's back."""
    api = server.api
    campaign = await api.campaign(units=2)
    member = await api.member(points=1000)
    await api.redeem(member.id, campaign.id)
    async with server.app.pool.connection() as conn:
        await conn.execute(
            "UPDATE campaign_members SET units_taken = units_taken + 1 WHERE campaign_id = %s",
            (campaign.id,),
        )
        await conn.execute(
            "UPDATE members SET points_balance = points_balance + 5 WHERE id = %s", (member.id,)
        )

    report = await settled_audit(server)

    assert any("per-member units" in v for v in report.violations)
    assert any("sum of the ledger" in v for v in report.violations)
