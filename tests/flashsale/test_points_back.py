"""Points back during events (issue 16 item 4) through a real channel: a campaign's
points_back_percent of the points paid comes back as an earned lot with the commit (points
+ cash: at confirmation), and is taken back by a cancel or a refunded return; the ledger,
the lots, the events, Redis's mirror and `surge audit` agree after each step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from loyalty.v1 import campaign_pb2, common_pb2, member_pb2, redemption_pb2
from tests.conftest import Running, StartServer
from tests.factories import ADDRESS, Api, failure, ts
from tests.flashsale.fulfilment_helpers import Fulfil
from tests.flashsale.helpers import outcomes, settled_audit
from tests.flashsale.test_points_and_cash import confirm
from tests.points.helpers import assert_ledger_holds, lots_of

PHYSICAL = common_pb2.ITEM_KIND_PHYSICAL


def create_request(item_id: str, **terms: Any) -> campaign_pb2.CreateCampaignRequest:
    starts = datetime.now(UTC) - timedelta(seconds=60)
    values: dict[str, Any] = {
        "units_allotted": 10,
        "points_price": 300,
        "cash_price_cents": 0,
        "per_member_limit": 5,
    } | terms
    return campaign_pb2.CreateCampaignRequest(
        item_id=item_id,
        name="Double points week",
        starts_at=ts(starts),
        ends_at=ts(starts + timedelta(hours=1)),
        **values,
    )


async def campaign(
    api: Api, percent: int | None, *, kind: int = PHYSICAL, **terms: Any
) -> campaign_pb2.Campaign:
    item = await api.item(kind=kind, stock=terms.get("units_allotted", 10))  # type: ignore[arg-type]
    extra = {} if percent is None else {"points_back_percent": percent}
    return await api.campaigns.CreateCampaign(create_request(item.id, **terms, **extra))


async def redeem(api: Api, member_id: str, campaign_id: str, **extra: Any) -> Any:
    return (await api.redeem(member_id, campaign_id, shipping_address=ADDRESS, **extra)).redemption


async def entries(api: Api, member_id: str) -> list[tuple[str, int, int, int, str]]:
    """(kind, amount, balance_after, debt_change, reference), oldest first."""
    listed = await api.members.ListLedgerEntries(
        member_pb2.ListLedgerEntriesRequest(member_id=member_id, page_size=100)
    )
    return [
        (
            member_pb2.LedgerEntryKind.Name(e.kind).removeprefix("LEDGER_ENTRY_KIND_").lower(),
            e.amount,
            e.balance_after,
            e.debt_change,
            e.reference,
        )
        for e in reversed(listed.entries)
    ]


async def points_events(running: Running, reference: str) -> list[tuple[str, int]]:
    async with running.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT type, (payload->>'amount')::bigint FROM events "
            "WHERE subject_kind = 'member' AND payload->>'reference' = %s ORDER BY sequence",
            (reference,),
        )
        return [(r[0], r[1]) for r in await cur.fetchall()]


async def test_posted_with_the_commit_and_reversed_by_a_cancel(start_server: StartServer) -> None:
    running = await start_server()
    api = running.api
    sale = await campaign(api, 100)
    member = await api.member(points=1000)

    made = await redeem(api, member.id, sale.id, idem="double-points-1")
    replayed = await redeem(api, member.id, sale.id, idem="double-points-1")
    after_redeem = await api.balance(member.id)
    ledger_after_redeem = await entries(api, member.id)
    await assert_ledger_holds(running, member.id)  # Redis mirrors the balance with them
    got = await api.redemptions.GetRedemption(
        redemption_pb2.GetRedemptionRequest(redemption_id=made.id, member_id=member.id)
    )

    assert sale.points_back_percent == 100
    assert (made.points_total, made.points_back, got.points_back) == (300, 300, 300)
    assert (replayed.id, replayed.points_back) == (made.id, 300)  # stored, replayed
    assert (after_redeem.balance, after_redeem.available) == (1000, 1000)
    back = f"points_back:{made.id}"
    assert ledger_after_redeem[1:] == [
        ("redeem", -300, 700, 0, f"redemption:{made.id}"),
        ("earn", 300, 1000, 0, back),
    ]
    lot = [x for x in await lots_of(running, member.id) if x[0] == back]
    assert len(lot) == 1 and lot[0][1:3] == (300, 300) and lot[0][3] is not None
    assert (await settled_audit(running)).ok

    cancelled = await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(redemption_id=made.id, member_id=member.id)
    )

    assert cancelled.status == redemption_pb2.REDEMPTION_STATUS_CANCELLED
    assert cancelled.points_back == 300  # as decided; the ledger took them back
    assert (await api.balance(member.id)).balance == 1000
    assert (await entries(api, member.id))[3:] == [
        ("refund", 300, 1300, 0, f"redemption:{made.id}"),
        ("reversal", -300, 1000, 0, back),
    ]
    assert (await lots_of(running, member.id))[0][2] == 1000  # the original lot whole again
    assert next(x for x in await lots_of(running, member.id) if x[0] == back)[2] == 0
    assert await points_events(running, back) == [
        ("points.earned", 300),
        ("points.reversed", -300),
    ]
    await assert_ledger_holds(running, member.id)
    assert (await settled_audit(running)).ok


async def test_a_refunded_return_reverses_and_an_exchange_keeps(start_server: StartServer) -> None:
    running = await start_server()
    fulfil = Fulfil.on(running)
    try:
        api = running.api
        sale = await campaign(api, 50)
        member = await api.member(points=1000)
        returned = await redeem(api, member.id, sale.id, quantity=1)
        exchanged = await redeem(api, member.id, sale.id, quantity=1)
        assert (returned.points_back, exchanged.points_back) == (150, 150)
        assert (await api.balance(member.id)).balance == 1000 - 2 * 300 + 2 * 150

        for r in (returned, exchanged):
            shipped = await fulfil.ship(await fulfil.pack(r))
            await fulfil.request_return(await fulfil.deliver(shipped))
        done = await fulfil.accept(returned)
        swapped = await fulfil.accept(exchanged, exchange=True)

        assert done.status == swapped.status == redemption_pb2.REDEMPTION_STATUS_RETURNED
        assert swapped.replaced_by
        # The return refunded 300 and took back 150; the exchange kept both.
        assert (await api.balance(member.id)).balance == 1000 - 300 + 150
        tail = await entries(api, member.id)
        assert ("reversal", -150, 850, 0, f"points_back:{returned.id}") in tail
        assert not [e for e in tail if e[0] == "reversal" and exchanged.id in e[4]]
        await assert_ledger_holds(running, member.id)
        assert (await settled_audit(running)).ok
    finally:
        await fulfil.close()


async def test_points_back_spent_before_the_cancel_become_debt(start_server: StartServer) -> None:
    """Double points (200 %): what the refund of the points paid cannot cover is debt, as
    for a reversed purchase, and the member's next credit repays it."""
    running = await start_server()
    api = running.api
    sale = await campaign(api, 200)
    member = await api.member(points=300)
    made = await redeem(api, member.id, sale.id)
    assert (made.points_back, (await api.balance(member.id)).balance) == (600, 600)
    elsewhere = await campaign(api, None, kind=common_pb2.ITEM_KIND_VIRTUAL, points_price=600)
    await redeem(api, member.id, elsewhere.id)  # spends every point back
    assert (await api.balance(member.id)).balance == 0

    await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(redemption_id=made.id, member_id=member.id)
    )

    after = await api.balance(member.id)
    assert (after.balance, after.debt) == (0, 300)
    assert (await entries(api, member.id))[-2:] == [
        ("refund", 300, 300, 0, f"redemption:{made.id}"),
        ("reversal", -300, 0, 300, f"points_back:{made.id}"),
    ]
    await assert_ledger_holds(running, member.id)
    assert (await settled_audit(running)).ok
    await api.earn(member.id, 500)
    repaid = await api.balance(member.id)
    assert (repaid.balance, repaid.debt) == (200, 0)


async def test_points_and_cash_posts_at_confirmation(start_server: StartServer) -> None:
    running = await start_server(payment_window_seconds=30.0)
    api = running.api
    sale = await campaign(api, 100, points_price=200, cash_price_cents=999)
    member = await api.member(points=1000)

    pending = await redeem(api, member.id, sale.id)
    while_pending = await api.balance(member.id)
    ledger_while_pending = await entries(api, member.id)
    confirmed = await api.redemptions.ConfirmPayment(confirm(pending))

    assert pending.status == redemption_pb2.REDEMPTION_STATUS_PENDING_PAYMENT
    assert pending.points_back == 200  # decided at admission, posted at confirmation
    assert (while_pending.balance, while_pending.held) == (1000, 200)
    assert [e[0] for e in ledger_while_pending] == ["earn"]  # only the opening earn
    assert confirmed.points_back == 200
    assert (await api.balance(member.id)).balance == 1000
    assert (await entries(api, member.id))[1:] == [
        ("redeem", -200, 800, 0, f"redemption:{pending.id}"),
        ("earn", 200, 1000, 0, f"points_back:{pending.id}"),
    ]
    await assert_ledger_holds(running, member.id)

    # A pending one cancelled posted nothing, so nothing is taken back.
    dropped = await redeem(api, member.id, sale.id)
    await api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(redemption_id=dropped.id, member_id=member.id)
    )
    assert (await api.balance(member.id)).balance == 1000
    assert not [e for e in await entries(api, member.id) if dropped.id in e[4]]
    await assert_ledger_holds(running, member.id)
    assert (await settled_audit(running)).ok


async def test_nothing_back_at_zero_percent_or_for_cash_only(start_server: StartServer) -> None:
    running = await start_server(payment_window_seconds=30.0)
    api = running.api
    plain = await campaign(api, None)
    cash_only = await campaign(api, 100, points_price=0, cash_price_cents=500)
    member = await api.member(points=1000)

    made = await redeem(api, member.id, plain.id)
    cash = await redeem(api, member.id, cash_only.id)
    await api.redemptions.ConfirmPayment(confirm(cash))

    assert (plain.points_back_percent, made.points_back, cash.points_back) == (0, 0, 0)
    assert (await api.balance(member.id)).balance == 700
    assert not [e for e in await entries(api, member.id) if "points_back" in e[4]]
    assert (await settled_audit(running)).ok
    # The audit's check would see points back stored and never posted.
    async with running.app.pool.connection() as conn:
        await conn.execute("UPDATE redemptions SET points_back = 7 WHERE id = %s", (made.id,))
    report = await settled_audit(running)
    assert [v for v in report.violations if "points back" in v], report.violations


@pytest.mark.parametrize("percent", [-1, 1001])
async def test_create_refuses_a_percent_out_of_range(
    start_server: StartServer, percent: int
) -> None:
    api = (await start_server()).api
    item = await api.item(kind=PHYSICAL)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.campaigns.CreateCampaign(create_request(item.id, points_back_percent=percent))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(refused.value).field == "points_back_percent"


async def test_update_changes_the_percent_for_later_redemptions(start_server: StartServer) -> None:
    running = await start_server()
    api = running.api
    sale = await campaign(api, 100)
    member = await api.member(points=2000)
    before = await redeem(api, member.id, sale.id)

    def update(percent: int) -> campaign_pb2.UpdateCampaignRequest:
        return campaign_pb2.UpdateCampaignRequest(
            campaign=campaign_pb2.Campaign(id=sale.id, points_back_percent=percent),
            update_mask=field_mask_pb2.FieldMask(paths=["points_back_percent"]),
        )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.campaigns.UpdateCampaign(update(1001))
    changed = await api.campaigns.UpdateCampaign(update(10))
    after = await redeem(api, member.id, sale.id)

    assert failure(refused.value).field == "points_back_percent"
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert changed.points_back_percent == 10
    assert (await api.get_campaign(sale.id)).points_back_percent == 10
    assert (before.points_back, after.points_back) == (300, 30)
    assert (await api.balance(member.id)).balance == 2000 - 600 + 330
    assert (await settled_audit(running)).ok


async def test_a_concurrent_surge_posts_exactly_the_sum_of_backs(start_server: StartServer) -> None:
    """50 redemptions at once (10 members x 5, so batches hold several entries of one
    member): every balance_after follows the entries before it, and the points back posted
    are exactly the redemptions' points_back."""
    running = await start_server()
    api = running.api
    sale = await campaign(api, 50, units_allotted=60, points_price=333)
    members = [await api.member(points=2000) for _ in range(10)]

    made, refused = await outcomes(
        api.redeem(m.id, sale.id, shipping_address=ADDRESS) for m in members for _ in range(5)
    )

    assert not refused and len(made) == 50
    assert {r.redemption.points_back for r in made} == {166}
    async with running.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT coalesce(sum(amount), 0), count(*) FROM ledger_entries "
            "WHERE kind = 'earn' AND reference LIKE 'points_back:%%'"
        )
        assert await cur.fetchone() == (50 * 166, 50)
        cur = await conn.execute(
            "SELECT member_id, amount, balance_after FROM ledger_entries "
            "WHERE member_id = ANY(%s::uuid[]) ORDER BY member_id, seq",
            ([m.id for m in members],),
        )
        running_sum: dict[Any, int] = {}
        for member_id, amount, balance_after in await cur.fetchall():
            running_sum[member_id] = running_sum.get(member_id, 0) + amount
            assert balance_after == running_sum[member_id]
    for m in members:
        assert (await api.balance(m.id)).balance == 2000 - 5 * 333 + 5 * 166
        await assert_ledger_holds(running, m.id)
    assert running.app.committer.batches < 50  # some batches held several entries
    assert (await settled_audit(running)).ok
