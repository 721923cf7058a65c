"""The audit (and so the load test's) check that events and rows agree: one
redemption.committed per committed redemption, none for anything else."""

from __future__ import annotations

import uuid

import psycopg

from loyalty.v1 import common_pb2, redemption_pb2
from tests.conftest import Running
from tests.factories import ADDRESS
from tests.flashsale.helpers import settled_audit

TITLE = "redemption.committed events disagree with redemptions"


async def _violations(server: Running) -> list[str]:
    report = await settled_audit(server)
    return [v for v in report.violations if v.startswith(TITLE)]


async def test_events_and_rows_agree_and_the_audit_sees_a_missing_or_extra_event(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(units=3, points_price=10, kind=common_pb2.ITEM_KIND_PHYSICAL)
    member = await api.member(points=1000)
    kept = (await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)).redemption
    cancelled = (await api.redeem(member.id, campaign.id, shipping_address=ADDRESS)).redemption
    await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(
            redemption_id=cancelled.id, member_id=member.id, reason="no"
        )
    )
    assert await _violations(server) == []  # a cancelled-after-commit one keeps its event

    url = server.app.stores.database_url
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "DELETE FROM events WHERE type = 'redemption.committed' AND subject_id = %s",
            (kept.id,),
        )
        missing = await _violations(server)
        refused = str(uuid.uuid4())  # an event for a redemption that does not exist
        await conn.execute(
            "SELECT append_event('redemption.committed', 'redemption', %s, '{}')", (refused,)
        )
        extra = await _violations(server)
    assert len(missing) == 1 and kept.id in missing[0]
    assert len(extra) == 2 and any(refused in v for v in extra)
