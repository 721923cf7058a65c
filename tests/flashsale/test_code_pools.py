"""Redemptions of a code-pool item: each takes one code in its own commit, two never share
one, an empty pool sells out; cancel revokes an unconsumed code and is refused for a
consumed one; generated-code items are unchanged."""

from __future__ import annotations

import random
import re

import grpc
import pytest

from loyalty.v1 import catalog_pb2, codes_pb2, redemption_pb2
from tests.conftest import Running, StartServer
from tests.factories import failure, key
from tests.flashsale.helpers import outcomes, settled_audit
from tests.inventory.codes_helpers import consume, pool, pool_item, upload, verify

COMMITTED = redemption_pb2.REDEMPTION_STATUS_COMMITTED


async def test_a_surge_takes_every_code_once_then_sells_out(server: Running) -> None:
    api = server.api
    item = await pool_item(api)
    loaded = [f"SURGE-{i:03d}" for i in range(40)]
    await upload(server, item.id, loaded)
    campaign = await api.campaign(item_id=item.id, units=40, points_price=100, limit=2)
    # Ten codes leave the pool behind the gate's back (as if another campaign's batches or
    # an operator's fix took them): Redis still sells 40 units, the pool has 30 codes, so
    # PostgreSQL's commit must refuse the 10 it cannot give a code to.
    async with server.app.pool.connection() as conn:
        await conn.execute(
            "DELETE FROM item_codes WHERE id IN (SELECT id FROM item_codes WHERE item_id = %s "
            "ORDER BY id DESC LIMIT 10)",
            (item.id,),
        )
    members = [await api.member(points=1_000) for _ in range(60)]
    calls = [api.redeem(m.id, campaign.id) for m in members for _ in range(2)]
    random.shuffle(calls)

    ok, refused = await outcomes(calls)

    codes = [r.redemption.redemption_code for r in ok]
    assert len(ok) == 30 and sorted(codes) == loaded[:30]  # every code once, none twice
    assert set(refused) == {"SOLD_OUT"} and refused["SOLD_OUT"] == 90
    async with server.app.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT r.id::text, r.status, r.redemption_code, ic.code, ic.status "
                "FROM redemptions r LEFT JOIN item_codes ic ON ic.redemption_id = r.id "
                "WHERE r.campaign_id = %s",
                (campaign.id,),
            )
        ).fetchall()
    assert len(rows) == 30
    assert {(status, generated, code_status) for _, status, generated, _, code_status in rows} == {
        ("COMMITTED", None, "ISSUED")
    }
    assert {(rid, code) for rid, _, _, code, _ in rows} == {
        (r.redemption.id, r.redemption.redemption_code) for r in ok
    }
    counts = await pool(server, item.id)
    assert (counts.loaded, counts.available, counts.issued) == (30, 0, 30)
    # The pool is empty: the next one is SOLD_OUT too, and nothing else was committed.
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await api.redeem(members[0].id, campaign.id)
    assert failure(empty.value).reason in ("SOLD_OUT", "LIMIT_EXCEEDED")
    with pytest.raises(grpc.aio.AioRpcError) as fresh:
        await api.redeem((await api.member(points=1_000)).id, campaign.id)
    assert failure(fresh.value).reason == "SOLD_OUT"
    assert (await api.get_campaign(campaign.id)).units_committed == 30
    report = await settled_audit(server)
    assert report.ok, report.violations


async def test_two_campaigns_of_one_pool_share_its_codes_without_sharing_one(
    start_server: StartServer,
) -> None:
    # Two commit workers: batches of the two campaigns run at once (campaign locks differ),
    # and a batch may hold entries of both (two campaigns, one pool index).
    server = await start_server(commit_workers=2)
    api = server.api
    item = await pool_item(api)
    loaded = [f"TWO-{i:02d}" for i in range(10)]
    await upload(server, item.id, loaded)
    first = await api.campaign(item_id=item.id, units=5, limit=1)
    second = await api.campaign(item_id=item.id, units=5, limit=1)
    members = [await api.member(points=1_000) for _ in range(20)]
    calls = [api.redeem(m.id, c.id) for m in members for c in (first, second)]
    random.shuffle(calls)

    ok, refused = await outcomes(calls)

    assert sorted(r.redemption.redemption_code for r in ok) == loaded
    assert {r.redemption.campaign_id for r in ok} == {first.id, second.id}
    assert set(refused) == {"SOLD_OUT"} and refused["SOLD_OUT"] == 30
    async with server.app.pool.connection() as conn:
        issued = await (
            await conn.execute(
                "SELECT count(DISTINCT redemption_id), count(*) FROM item_codes "
                "WHERE item_id = %s AND status = 'ISSUED'",
                (item.id,),
            )
        ).fetchone()
    assert issued == (10, 10)
    report = await settled_audit(server)
    assert report.ok, report.violations


async def test_cancel_revokes_an_unconsumed_code_and_refuses_a_consumed_one(
    server: Running,
) -> None:
    api = server.api
    item = await pool_item(api)
    await upload(server, item.id, ["K-1", "K-2", "K-3"])
    campaign = await api.campaign(item_id=item.id, units=3, points_price=100)
    ann, bob, cat = [await api.member(points=1_000) for _ in range(3)]
    ann_key = key()
    used = (await api.redeem(ann.id, campaign.id, idem=ann_key)).redemption
    kept = (await api.redeem(bob.id, campaign.id)).redemption
    assert (used.redemption_code, kept.redemption_code) == ("K-1", "K-2")
    # A replay of the key answers the same code (read back from the pool).
    replay = await api.redeem(ann.id, campaign.id, idem=ann_key)
    assert replay.replayed and replay.redemption.redemption_code == "K-1"
    await consume(server, item.id, "K-1", "use-1")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.redemptions.CancelRedemption(
            redemption_pb2.CancelRedemptionRequest(redemption_id=used.id, member_id=ann.id)
        )
    f = failure(refused.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CODE_CONSUMED")
    assert (await api.balance(ann.id)).balance == 900  # nothing refunded
    got = await api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(redemption_id=used.id, member_id=ann.id)
    )
    assert got.status == COMMITTED

    cancelled = await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(redemption_id=kept.id, member_id=bob.id)
    )
    assert cancelled.status == redemption_pb2.REDEMPTION_STATUS_CANCELLED
    assert (await api.balance(bob.id)).balance == 1_000
    revoked = await verify(server, item.id, "K-2")
    assert (revoked.status, revoked.consumable) == (codes_pb2.CODE_STATUS_REVOKED, False)
    with pytest.raises(grpc.aio.AioRpcError) as consume_revoked:
        await consume(server, item.id, "K-2", "use-2")
    assert failure(consume_revoked.value).reason == "CODE_REVOKED"

    # The cancelled unit is on sale again, but the revoked code is never given again: the
    # next redemption takes K-3, the one after finds the pool empty.
    third = (await api.redeem(cat.id, campaign.id)).redemption
    assert third.redemption_code == "K-3"
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await api.redeem(bob.id, campaign.id)
    assert failure(empty.value).reason == "SOLD_OUT"
    counts = await pool(server, item.id)
    assert (counts.available, counts.issued, counts.consumed, counts.revoked) == (0, 1, 1, 1)
    report = await settled_audit(server)
    assert report.ok, report.violations
    # The audit notices a cancelled redemption whose code came back to life.
    async with server.app.pool.connection() as conn:
        await conn.execute("UPDATE item_codes SET status = 'ISSUED' WHERE code = 'K-2'")
    broken = await settled_audit(server)
    assert any("pool code whose state disagrees" in v for v in broken.violations)


async def test_generated_codes_are_unchanged_and_a_pool_item_redeems_one_unit(
    server: Running,
) -> None:
    api = server.api
    generated = await api.campaign(units=5, points_price=100)
    member = await api.member(points=1_000)
    made = (await api.redeem(member.id, generated.id, quantity=2)).redemption
    assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", made.redemption_code)
    item = await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=made.item_id))
    assert item.code_source == catalog_pb2.CODE_SOURCE_GENERATED

    pooled = await pool_item(api)
    await upload(server, pooled.id, ["Q-1", "Q-2"])
    campaign = await api.campaign(item_id=pooled.id, units=2)
    with pytest.raises(grpc.aio.AioRpcError) as two:
        await api.redeem(member.id, campaign.id, quantity=2)
    assert (failure(two.value).code, failure(two.value).field) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "quantity",
    )
    async with server.app.pool.connection() as conn:
        issued = await (
            await conn.execute("SELECT count(*) FROM item_codes WHERE status <> 'AVAILABLE'")
        ).fetchone()
    assert issued == (0,)
