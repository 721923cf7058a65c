"""CreateLottery's validation (each error names its field, nothing is created) and
GetLottery's odds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from loyalty.v1 import lottery_pb2
from tests.conftest import Running
from tests.factories import failure
from tests.lottery.helpers import GOOD, NONE, create_request, pg_rows, prize, stub


async def test_bad_lotteries_are_refused_naming_the_field_and_create_nothing(
    server: Running,
) -> None:
    item = await server.api.item()
    good = prize("Mug", GOOD, weight=1, stock=3, item_id=item.id)
    none = prize("Thanks", NONE, weight=1)
    cases = [
        (create_request([good, prize("Thanks", NONE, weight=0)]), "prizes[1].weight"),
        (
            create_request([prize("Mug", GOOD, weight=0, stock=3, item_id=item.id), none]),
            "prizes[0].weight",
        ),
        (
            create_request([prize("Mug", GOOD, weight=1, stock=-1, item_id=item.id), none]),
            "prizes[0].stock",
        ),
        (create_request([good]), "prizes"),
        (create_request([good, none, prize("Again", NONE, weight=1)]), "prizes[2].kind"),
        (
            create_request(
                [prize("Mug", GOOD, weight=1, stock=1, item_id=str(uuid.uuid4())), none]
            ),
            "prizes[0].item_id",
        ),
        (create_request([prize("X", 0, weight=1), none]), "prizes[0].kind"),
        (create_request([prize("Thanks", NONE, weight=1, stock=5)]), "prizes[0].stock"),
        (create_request([good, none], cost=0), "cost_points"),
        (create_request([good, none], daily=0), "per_member_daily"),
        (create_request([good, none], total=-1), "per_member_total"),
    ]
    bad_window = create_request([good, none])
    bad_window.ends_at.CopyFrom(bad_window.starts_at)
    cases.append((bad_window, "ends_at"))
    over = create_request([good, none])
    over.starts_at.FromDatetime(datetime.now(UTC) - timedelta(hours=2))
    over.ends_at.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
    cases.append((over, "ends_at"))  # its prizes would be allotted to a lottery never open
    cases.append((create_request([good, none], cost=10**13), "cost_points"))

    for request, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub(server).CreateLottery(request)
        f = failure(bad.value)
        assert (f.code, f.field) == (grpc.StatusCode.INVALID_ARGUMENT, field), request

    assert pg_rows(server, "SELECT count(*) FROM lotteries") == [(0,)]
    assert pg_rows(server, "SELECT count(*) FROM lottery_prizes") == [(0,)]


async def test_get_lottery_publishes_odds_and_stock(server: Running) -> None:
    a, b = await server.api.item(), await server.api.item()
    created = await stub(server).CreateLottery(
        create_request(
            [
                prize("TV", GOOD, weight=1, stock=1, item_id=a.id),
                prize("Mug", GOOD, weight=3, stock=0, item_id=b.id),  # out of stock already
                prize("Thanks", NONE, weight=4),
            ]
        )
    )

    got = await stub(server).GetLottery(lottery_pb2.GetLotteryRequest(lottery_id=created.id))
    listed = await stub(server).ListLotteries(lottery_pb2.ListLotteriesRequest())

    tv, mug, thanks = got.prizes
    assert (tv.stock, tv.awarded, tv.remaining) == (1, 0, 1)
    assert tv.odds == pytest.approx(0.2)
    assert (mug.remaining, mug.odds) == (0, 0.0)  # out of stock: out of the draw
    assert thanks.kind == NONE and thanks.odds == pytest.approx(0.8)
    assert [x.id for x in listed.lotteries] == [created.id]
    audit = pg_rows(
        server, "SELECT target_id FROM audit_events WHERE action = 'lottery.create_lottery'"
    )
    assert audit == [(created.id,)]
