"""A hot campaign split into stock shards (flashsale/shards.py): sold in sum exactly its
allotment, never more, with no unit left behind in one shard when the others sell out."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import timedelta

import grpc
import pytest

from flashsale import idempotency, shards
from flashsale.gate import CampaignKeys, Reserve, hold_id
from flashsale.rebuild import rebuild_cache
from loyalty.v1 import common_pb2, redemption_pb2
from tests.conftest import Running
from tests.factories import Api, failure, key
from tests.flashsale.helpers import outcomes, settled_audit
from tests.flashsale.test_campaign_changes import end, update


async def redeem_retrying(
    api: Api, member_id: str, campaign_id: str, *, quantity: int = 1
) -> redemption_pb2.RedeemResponse:
    """A client's Redeem: the same key again on a retryable ABORTED."""
    idem = key()
    for _ in range(20):
        try:
            return await api.redeem(member_id, campaign_id, quantity=quantity, idem=idem)
        except grpc.aio.AioRpcError as e:
            if e.code() is not grpc.StatusCode.ABORTED:
                raise
            await asyncio.sleep(0.01)
    return await api.redeem(member_id, campaign_id, quantity=quantity, idem=idem)


async def free_units(running: Running, campaign_id: str, k: int) -> list[int]:
    return [u.free for u in await running.app.campaign_gate.shards.units(campaign_id, k)]


async def members_homed(api: Api, k: int, index: int, count: int) -> list[str]:
    """Members whose home shard is `index`; member ids are random, so make until found."""
    found: list[str] = []
    while len(found) < count:
        member = await api.member(points=10_000)
        if shards.home_index(member.id, k) == index:
            found.append(member.id)
    return found


async def test_a_race_on_a_split_campaign_sells_exactly_its_allotment(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=100, points_price=10, limit=3, stock_shards=4)
    assert campaign.stock_shards == 4
    assert await free_units(server, campaign.id, 4) == [25, 25, 25, 25]
    members = [await api.member(points=10_000) for _ in range(120)]
    calls = [redeem_retrying(api, m.id, campaign.id) for m in members for _ in range(3)]
    random.shuffle(calls)

    ok, refused = await outcomes(calls)

    assert sum(r.redemption.quantity for r in ok) == 100
    assert len({r.redemption.id for r in ok}) == 100
    assert set(refused) == {"SOLD_OUT"} and refused["SOLD_OUT"] == 260
    # Sold out answered only with every shard empty: nothing stranded anywhere.
    assert await free_units(server, campaign.id, 4) == [0, 0, 0, 0]
    after = await api.get_campaign(campaign.id)
    assert (after.units_committed, after.units_remaining, after.units_held) == (100, 0, 0)
    report = await settled_audit(server)
    assert report.ok, report.violations
    assert report.units_committed == 100
    # Bounded state: every key of every shard (transfer markers too) has an end.
    redis = server.app.redis
    mine = [k async for k in redis.scan_iter(match="{campaign:" + campaign.id + ":*", count=1000)]
    assert any(b":xin:" in k for k in mine)
    assert [k for k in mine if await redis.ttl(k) == -1] == []


async def test_mixed_quantities_on_eight_shards_never_sell_more_than_the_allotment(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(units=64, points_price=10, limit=6, stock_shards=8)
    members = [await api.member(points=10_000) for _ in range(60)]
    calls = [
        redeem_retrying(api, m.id, campaign.id, quantity=random.randint(1, 3))
        for m in members
        for _ in range(2)
    ]

    ok, refused = await outcomes(calls)

    sold = sum(r.redemption.quantity for r in ok)
    left = sum(await free_units(server, campaign.id, 8))
    assert sold + left == 64 and left < 3  # what is left is less than some refused asked for
    assert set(refused) <= {"SOLD_OUT"}
    after = await api.get_campaign(campaign.id)
    assert after.units_committed == sold and after.units_remaining == left
    report = await settled_audit(server)
    assert report.ok, report.violations


async def test_a_member_whose_home_shard_is_empty_gets_a_unit_while_any_shard_has_one(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(units=4, points_price=10, limit=1, stock_shards=4)
    buyers = await members_homed(api, 4, 0, 5)

    for member_id in buyers[:4]:  # shard 0 had one unit; the other three are moved in
        assert (await api.redeem(member_id, campaign.id)).redemption.quantity == 1
    assert await free_units(server, campaign.id, 4) == [0, 0, 0, 0]
    with pytest.raises(grpc.aio.AioRpcError) as sold_out:
        await api.redeem(buyers[4], campaign.id)

    assert failure(sold_out.value).reason == "SOLD_OUT"
    report = await settled_audit(server)
    assert report.ok, report.violations


async def test_units_spread_over_shards_serve_a_quantity_no_shard_has_alone(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(units=8, points_price=10, limit=8, stock_shards=4)
    member = await api.member(points=10_000)

    bought = await api.redeem(member.id, campaign.id, quantity=7)

    assert bought.redemption.quantity == 7
    assert sum(await free_units(server, campaign.id, 4)) == 1
    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await api.redeem((await api.member(points=10_000)).id, campaign.id, quantity=2)
    assert failure(too_many.value).reason == "SOLD_OUT"
    assert sum(await free_units(server, campaign.id, 4)) == 1  # a refusal takes nothing


async def test_a_retry_of_the_same_key_returns_the_same_redemption_or_refusal(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(units=2, points_price=10, limit=2, stock_shards=3)
    member = await api.member(points=10_000)
    idem = key()

    first, again = await asyncio.gather(
        api.redeem(member.id, campaign.id, idem=idem), api.redeem(member.id, campaign.id, idem=idem)
    )
    third = await api.redeem(member.id, campaign.id, idem=idem)

    assert first.redemption.id == again.redemption.id == third.redemption.id
    other = await api.member(points=10_000)
    await api.redeem(other.id, campaign.id)
    late, late_key = await api.member(points=10_000), key()
    for _ in range(2):  # the refusal is remembered for the key, once every shard is empty
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.redeem(late.id, campaign.id, idem=late_key)
        assert failure(refused.value).reason == "SOLD_OUT"
    after = await api.get_campaign(campaign.id)
    assert after.units_committed == 2


async def test_a_retry_after_a_crash_finds_its_hold_on_the_home_shard_and_nowhere_else(
    server: Running,
) -> None:
    api = server.api
    app = server.app
    campaign = await api.campaign(units=3, points_price=10, limit=3, stock_shards=3)
    member = await api.member(points=10_000)
    idem, where = key(), shards.home(campaign.id, member.id, 3)
    # A process held units and points for the key on the member's home shard, then died.
    fingerprint = idempotency.fingerprint(member.id, campaign.id, 1, None)
    held = await app.campaign_gate.reserve(
        where,
        member.id,
        hold_id(member.id, idem),
        quantity=1,
        fingerprint=fingerprint,
        hold_ttl_ms=60_000,
    )
    assert held.code is Reserve.HELD
    # Every other unit sold, so a retry that looked elsewhere would find none.
    for other in [await api.member(points=10_000) for _ in range(2)]:
        await api.redeem(other.id, campaign.id)

    retried = await api.redeem(member.id, campaign.id, idem=idem)
    again = await api.redeem(member.id, campaign.id, idem=idem)

    assert retried.redemption.id == again.redemption.id
    records = [
        k async for k in app.redis.scan_iter(match="*:h:" + member.id + ":" + idem, count=1000)
    ]
    assert records == [CampaignKeys(where).record(hold_id(member.id, idem)).encode()]
    after = await api.get_campaign(campaign.id)
    assert (after.units_committed, after.units_remaining) == (3, 0)
    report = await settled_audit(server)
    assert report.ok, report.violations


async def test_the_per_member_limit_holds_on_a_split_campaign(server: Running) -> None:
    api = server.api
    campaign = await api.campaign(units=40, points_price=10, limit=2, stock_shards=4)
    member = await api.member(points=10_000)

    ok, refused = await outcomes(redeem_retrying(api, member.id, campaign.id) for _ in range(6))

    assert len(ok) == 2 and refused == {"LIMIT_EXCEEDED": 4}
    report = await settled_audit(server)
    assert report.ok, report.violations


async def test_an_expired_hold_on_a_shard_other_than_the_first_returns_to_stock(
    server: Running,
) -> None:
    api = server.api
    app = server.app
    await app.sweeper.stop()
    campaign = await api.campaign(units=8, points_price=10, limit=2, stock_shards=4)
    (member_id,) = await members_homed(api, 4, 2, 1)
    where = shards.home(campaign.id, member_id, 4)
    held = await app.campaign_gate.reserve(
        where,
        member_id,
        hold_id(member_id, "left-behind"),
        quantity=2,
        fingerprint="f",
        hold_ttl_ms=-1000,  # a process died with it a second ago
    )
    assert held.code is Reserve.HELD
    assert await free_units(server, campaign.id, 4) == [2, 2, 0, 2]

    report = await app.sweeper.sweep_once()

    assert report.released == 1
    assert await free_units(server, campaign.id, 4) == [2, 2, 2, 2]
    assert (await api.get_campaign(campaign.id)).units_held == 0


async def test_a_transfer_cut_by_a_crash_is_completed_by_the_sweeper(server: Running) -> None:
    api = server.api
    app = server.app
    await app.sweeper.stop()
    campaign = await api.campaign(units=8, points_price=10, limit=8, stock_shards=2)
    gate = app.campaign_gate.shards
    src = CampaignKeys(shards.slot(campaign.id, 1))
    transfer_id = uuid.uuid4().hex
    # Step 1 only, on shard 1 towards shard 0; the process dies before step 2.
    taken = await gate._take(
        keys=[src.state, src.tag + ":x:" + transfer_id, src.tag + ":transfers"],
        args=[3, transfer_id, 0],
    )
    assert taken == 3
    assert await free_units(server, campaign.id, 2) == [4, 1]
    await app.redis.zadd(src.tag + ":transfers", {transfer_id: 0})  # long ago

    await app.sweeper.sweep_once()
    await app.sweeper.sweep_once()  # again: adds nothing twice

    assert await free_units(server, campaign.id, 2) == [7, 1]
    assert await app.redis.zcard(src.tag + ":transfers") == 0
    members = [await api.member(points=10_000) for _ in range(12)]
    ok, refused = await outcomes(redeem_retrying(api, m.id, campaign.id) for m in members)
    assert len(ok) == 8 and refused == {"SOLD_OUT": 4}
    report = await settled_audit(server)
    assert report.ok, report.violations


async def test_a_split_campaign_is_rebuilt_from_postgresql_after_a_flush(server: Running) -> None:
    api = server.api
    app = server.app
    campaign = await api.campaign(units=40, points_price=10, limit=40, stock_shards=4)
    buyer = await api.member(points=10_000)
    await api.redeem(buyer.id, campaign.id, quantity=10)
    await app.sweeper.sweep_once()

    await app.redis.flushall()
    await rebuild_cache(app.pool, app.campaigns, app.points_gate, ended_within=timedelta(hours=1))

    assert await free_units(server, campaign.id, 4) == [8, 8, 7, 7]
    members = [await api.member(points=10_000) for _ in range(50)]
    ok, refused = await outcomes(redeem_retrying(api, m.id, campaign.id) for m in members)
    assert len(ok) == 30 and refused == {"SOLD_OUT": 20}
    after = await api.get_campaign(campaign.id)
    assert (after.units_committed, after.units_remaining) == (40, 0)
    report = await settled_audit(server)
    assert report.ok, report.violations


async def test_a_cancelled_redemption_gives_its_units_back_to_a_shard_once(
    server: Running,
) -> None:
    api = server.api
    campaign = await api.campaign(
        units=4, points_price=10, limit=4, stock_shards=2, kind=common_pb2.ITEM_KIND_SERVICE
    )
    member = await api.member(points=10_000)
    bought = (await api.redeem(member.id, campaign.id, quantity=3)).redemption
    request = redemption_pb2.CancelRedemptionRequest(
        redemption_id=bought.id, member_id=member.id, reason="changed my mind"
    )

    await api.redemptions.CancelRedemption(request)
    await api.redemptions.CancelRedemption(request)  # again: nothing comes back twice

    assert sum(await free_units(server, campaign.id, 2)) == 4
    others = [await api.member(points=10_000) for _ in range(6)]
    ok, refused = await outcomes(redeem_retrying(api, m.id, campaign.id) for m in others)
    assert len(ok) == 4 and refused == {"SOLD_OUT": 2}
    report = await settled_audit(server)
    assert report.ok, report.violations


async def test_an_allotment_change_reaches_the_shards(server: Running) -> None:
    api = server.api
    item = await api.item(stock=20)
    campaign = await api.campaign(units=10, item_id=item.id, limit=20, stock_shards=2)

    raised = await api.campaigns.UpdateCampaign(update(campaign.id, units_allotted=14))
    assert raised.units_remaining == 14
    assert sum(await free_units(server, campaign.id, 2)) == 14
    cut = await api.campaigns.UpdateCampaign(update(campaign.id, units_allotted=6))
    assert cut.units_remaining == 6
    assert sum(await free_units(server, campaign.id, 2)) == 6

    members = [await api.member(points=10_000) for _ in range(8)]
    ok, refused = await outcomes(redeem_retrying(api, m.id, campaign.id) for m in members)
    assert len(ok) == 6 and refused == {"SOLD_OUT": 2}
    await api.campaigns.EndCampaign(end(campaign.id))
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await api.redeem(members[0].id, campaign.id)
    assert failure(ended.value).reason == "CAMPAIGN_NOT_ACTIVE"
    report = await settled_audit(server)
    assert report.ok, report.violations


@pytest.mark.parametrize("value", [0, 65, -1])
async def test_stock_shards_out_of_range_is_invalid_argument(api: Api, value: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await api.campaign(units=10, stock_shards=value)

    f = failure(bad.value)
    assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, "stock_shards")
    assert "stock_shards" in f.message


async def test_a_campaign_not_split_keeps_its_one_slot(server: Running) -> None:
    campaign = await server.api.campaign(units=3)

    assert campaign.stock_shards == 1
    assert await server.app.redis.exists("{campaign:" + campaign.id + "}") == 1
    assert await server.app.redis.exists("{campaign:" + campaign.id + ":0}") == 0
