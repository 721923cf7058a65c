"""CampaignService.UpdateCampaign and EndCampaign through a real channel: the guards, the
item's stock, the Redis gate following, and a cut while redemptions run (no oversell)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from flashsale.gate import CampaignKeys, CampaignLoad
from loyalty.v1 import campaign_pb2, catalog_pb2, redemption_pb2
from server import scopes
from tests import auth
from tests.auditlog.helpers import events
from tests.conftest import Running
from tests.factories import Api, failure, key, ts
from tests.flashsale.helpers import outcomes, settled_audit


def update(campaign_id: str, **values: Any) -> campaign_pb2.UpdateCampaignRequest:
    return campaign_pb2.UpdateCampaignRequest(
        campaign=campaign_pb2.Campaign(id=campaign_id, **values),
        update_mask=field_mask_pb2.FieldMask(paths=list(values)),
    )


def end(campaign_id: str) -> campaign_pb2.EndCampaignRequest:
    return campaign_pb2.EndCampaignRequest(campaign_id=campaign_id)


async def stock(api: Api, item_id: str) -> int:
    item = await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item_id))
    return item.stock_on_hand


async def refused(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    return failure(e.value)


async def gate_state(running: Running, campaign_id: str) -> dict[str, int]:
    raw = await running.app.redis.hgetall(CampaignKeys(campaign_id).state)
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


async def test_the_allotment_moves_units_between_the_item_and_the_campaign(
    server: Running,
) -> None:
    api = server.api
    item = await api.item(stock=20)
    c = await api.campaign(units=10, item_id=item.id, limit=10)
    member = await api.member(points=10_000)
    await api.redeem(member.id, c.id, quantity=4)
    assert await stock(api, item.id) == 10

    raised = await api.campaigns.UpdateCampaign(update(c.id, units_allotted=15))
    assert (raised.units_allotted, raised.units_remaining) == (15, 11)
    assert await stock(api, item.id) == 5
    assert (await gate_state(server, c.id))["allotted"] == 15

    cut = await api.campaigns.UpdateCampaign(update(c.id, units_allotted=4))
    assert (cut.units_allotted, cut.units_remaining) == (4, 0)
    assert await stock(api, item.id) == 16
    assert (await gate_state(server, c.id))["allotted"] == 4
    f = await refused(api.redeem(member.id, c.id))
    assert f.reason == "SOLD_OUT"

    f = await refused(api.campaigns.UpdateCampaign(update(c.id, units_allotted=3)))
    assert (f.code, f.reason, f.metadata["units_taken"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ALLOTMENT_BELOW_TAKEN",
        "4",
    )
    f = await refused(api.campaigns.UpdateCampaign(update(c.id, units_allotted=21)))
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_STOCK")
    assert await stock(api, item.id) == 16  # refusals changed nothing
    assert (await settled_audit(server)).ok


async def test_limit_price_and_window_reach_the_gate_and_the_next_redemption(
    server: Running,
) -> None:
    api = server.api
    c = await api.campaign(units=10, limit=1, points_price=100)
    member = await api.member(points=10_000)
    await api.redeem(member.id, c.id)
    assert (await refused(api.redeem(member.id, c.id))).reason == "LIMIT_EXCEEDED"

    await api.campaigns.UpdateCampaign(update(c.id, per_member_limit=3, points_price=40))
    assert (await gate_state(server, c.id))["limit"] == 3
    second = await api.redeem(member.id, c.id, quantity=2)
    assert second.redemption.points_total == 80  # the new price, in this process at once

    # Not below what a member took (invariant 3 holds for them too); down to it, yes.
    f = await refused(api.campaigns.UpdateCampaign(update(c.id, per_member_limit=2)))
    assert (f.code, f.reason, f.metadata["units_taken"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "LIMIT_BELOW_TAKEN",
        "3",
    )
    await api.campaigns.UpdateCampaign(update(c.id, per_member_limit=3))
    assert (await refused(api.redeem(member.id, c.id))).reason == "LIMIT_EXCEEDED"

    later = datetime.now(UTC) + timedelta(hours=1)
    moved = await api.campaigns.UpdateCampaign(
        update(c.id, starts_at=ts(later), ends_at=ts(later + timedelta(hours=1)))
    )
    assert moved.starts_at == ts(later)
    state = await gate_state(server, c.id)
    assert state["starts_ms"] == int(later.timestamp() * 1000)
    other = await api.member(points=10_000)
    assert (await refused(api.redeem(other.id, c.id))).reason == "CAMPAIGN_NOT_ACTIVE"
    assert (await settled_audit(server)).ok


async def test_an_update_that_changes_nothing_writes_nothing(server: Running) -> None:
    api = server.api
    item = await api.item(stock=10)
    c = await api.campaign(units=5, limit=2, item_id=item.id)
    again = await api.campaigns.UpdateCampaign(update(c.id, units_allotted=5, name=c.name))
    assert again.units_allotted == 5
    assert await events(server, action="campaign.update_campaign") == []
    await api.campaigns.UpdateCampaign(update(c.id, units_allotted=6))
    await api.campaigns.UpdateCampaign(update(c.id, units_allotted=6))  # sent twice
    assert len(await events(server, action="campaign.update_campaign")) == 1


@pytest.mark.parametrize(
    ("values", "paths", "field"),
    [
        ({}, [], "update_mask"),
        ({"units_committed": 3}, None, "update_mask"),
        ({"item_id": "x"}, None, "update_mask"),
        ({"units_allotted": 0}, None, "units_allotted"),
        ({"per_member_limit": 0}, None, "per_member_limit"),
        ({"points_price": -1}, None, "points_price"),
        ({"points_price": 0}, None, "points_price"),  # and no cash price
        ({"name": ""}, None, "name"),
        ({}, ["starts_at"], "starts_at"),  # named but not set
        ({"ends_at": "past"}, None, "ends_at"),
        ({"ends_at": "before-start"}, None, "ends_at"),
    ],
)
async def test_bad_updates_are_invalid_argument_naming_the_field(
    api: Api, values: dict[str, Any], paths: list[str] | None, field: str
) -> None:
    c = await api.campaign()
    if values.get("ends_at") == "past":
        values["ends_at"] = ts(datetime.now(UTC) - timedelta(seconds=1))
    elif values.get("ends_at") == "before-start":
        values["ends_at"] = ts(c.starts_at.ToDatetime(tzinfo=UTC) - timedelta(seconds=1))
    request = campaign_pb2.UpdateCampaignRequest(
        campaign=campaign_pb2.Campaign(id=c.id, **values),
        update_mask=field_mask_pb2.FieldMask(paths=list(values) if paths is None else paths),
    )
    f = await refused(api.campaigns.UpdateCampaign(request))
    assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, field)


async def test_end_gives_unsold_units_back_and_an_ended_campaign_cannot_change(
    server: Running,
) -> None:
    api = server.api
    item = await api.item(stock=10)
    c = await api.campaign(units=8, item_id=item.id, limit=5)
    member = await api.member(points=10_000)
    await api.redeem(member.id, c.id, quantity=3)
    assert await stock(api, item.id) == 2

    ended = await api.campaigns.EndCampaign(end(c.id))
    assert (ended.units_allotted, ended.units_committed, ended.units_remaining) == (3, 3, 0)
    assert ended.ends_at.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)
    assert await stock(api, item.id) == 7
    assert (await refused(api.redeem(member.id, c.id))).reason == "CAMPAIGN_NOT_ACTIVE"
    state = await gate_state(server, c.id)
    assert (state["allotted"], state["ends_ms"]) == (3, int(ended.ends_at.ToMilliseconds()))

    # Idempotent: ending again changes nothing and records nothing.
    again = await api.campaigns.EndCampaign(end(c.id))
    assert again == ended
    assert await stock(api, item.id) == 7
    assert len(await events(server, action="campaign.end_campaign", target_id=c.id)) == 1

    f = await refused(api.campaigns.UpdateCampaign(update(c.id, name="Reopened")))
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CAMPAIGN_ENDED")
    later = datetime.now(UTC) + timedelta(hours=1)
    f = await refused(api.campaigns.UpdateCampaign(update(c.id, ends_at=ts(later))))
    assert f.reason == "CAMPAIGN_ENDED"  # a sale that is over does not reopen
    assert (await settled_audit(server)).ok


async def test_ending_an_upcoming_campaign_gives_all_its_units_back(api: Api) -> None:
    item = await api.item(stock=6)
    c = await api.campaign(units=6, item_id=item.id, starts_in=timedelta(hours=1))
    ended = await api.campaigns.EndCampaign(end(c.id))
    assert ended.units_allotted == 0
    assert ended.starts_at.ToDatetime(tzinfo=UTC) < ended.ends_at.ToDatetime(tzinfo=UTC)
    assert await stock(api, item.id) == 6


async def test_unknown_campaigns_are_not_found(api: Api) -> None:
    nobody = "00000000-0000-4000-8000-000000000000"
    f = await refused(api.campaigns.UpdateCampaign(update(nobody, name="x")))
    assert f.code == grpc.StatusCode.NOT_FOUND
    assert (await refused(api.campaigns.EndCampaign(end(nobody)))).code == grpc.StatusCode.NOT_FOUND


async def test_a_reload_read_before_an_update_does_not_undo_it(server: Running) -> None:
    """load.lua applies the terms by meta_version: an older load leaves the newer terms."""
    api = server.api
    c = await api.campaign(units=10, limit=2)
    await api.campaigns.UpdateCampaign(update(c.id, units_allotted=5, per_member_limit=1))
    stale = CampaignLoad(
        allotted=10,
        limit=2,
        starts_ms=0,
        ends_ms=0,
        taken=0,
        version=1,
        members=(),
        meta_version=1,
    )
    await server.app.campaign_gate.load(c.id, stale)
    state = await gate_state(server, c.id)
    assert (state["allotted"], state["limit"], state["mver"]) == (5, 1, 2)


async def test_only_operators_change_campaigns(server: Running) -> None:
    c = await server.api.campaign()
    for scope in (scopes.STOREFRONT, scopes.REPORTS, scopes.PAYMENTS):
        channel = auth.channel(f"127.0.0.1:{server.app.port}", auth.token([scope]))
        try:
            other = Api(channel)
            for call in (
                other.campaigns.UpdateCampaign(update(c.id, name="Mine")),
                other.campaigns.EndCampaign(end(c.id)),
            ):
                f = await refused(call)
                assert (f.code, f.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_MISSING")
        finally:
            await channel.close()


async def test_cutting_the_allotment_while_redemptions_run_never_oversells(
    server: Running,
) -> None:
    """Redis learns the cut a moment after PostgreSQL: what it admits meanwhile is refused
    by PostgreSQL (SOLD_OUT) and given back. Committed units stay within the new allotment,
    the audit (Redis and PostgreSQL) is clean, and every unit is on the item or the
    campaign."""
    api = server.api
    item = await api.item(stock=60)
    c = await api.campaign(units=60, item_id=item.id, limit=1)
    members = [await api.member(points=1_000) for _ in range(80)]

    async def cut() -> int:
        await asyncio.sleep(0.01)  # let the first redemptions in
        target = 10
        while True:
            try:
                cutted = await api.campaigns.UpdateCampaign(update(c.id, units_allotted=target))
                return cutted.units_allotted
            except grpc.aio.AioRpcError as e:
                f = failure(e)
                assert f.reason == "ALLOTMENT_BELOW_TAKEN", f
                target = int(f.metadata["units_taken"])

    redemptions = [
        api.redemptions.Redeem(
            redemption_pb2.RedeemRequest(
                member_id=m.id, campaign_id=c.id, quantity=1, idempotency_key=key()
            )
        )
        for m in members
    ]
    cut_task = asyncio.create_task(cut())
    ok, refusals = await outcomes(redemptions)
    allotted = await cut_task

    assert set(refusals) == {"SOLD_OUT"}, refusals
    assert len(ok) <= allotted <= 60
    after = await api.campaigns.GetCampaign(campaign_pb2.GetCampaignRequest(campaign_id=c.id))
    assert after.units_allotted == allotted
    assert after.units_committed == len(ok)
    assert await stock(api, item.id) + allotted == 60
    report = await settled_audit(server)
    assert report.ok, report.violations
    assert (await gate_state(server, c.id))["allotted"] == allotted
