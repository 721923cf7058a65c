"""Shared steps for lottery tests: create a lottery through the API, draw, read PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from loyalty.v1 import lottery_pb2, lottery_pb2_grpc
from tests.conftest import Running
from tests.factories import key, ts

if TYPE_CHECKING:
    from loyalty.v1.lottery_pb2_grpc import LotteryServiceAsyncStub

GOOD = lottery_pb2.PRIZE_KIND_GOOD
NONE = lottery_pb2.PRIZE_KIND_NONE


def prize(
    name: str, kind: int, *, weight: int, stock: int = 0, item_id: str = ""
) -> lottery_pb2.PrizeSpec:
    return lottery_pb2.PrizeSpec(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        weight=weight,
        stock=stock,
        item_id=item_id,
    )


def stub(running: Running) -> LotteryServiceAsyncStub:
    return lottery_pb2_grpc.LotteryServiceStub(running.channel)


def create_request(
    prizes: list[lottery_pb2.PrizeSpec],
    *,
    cost: int = 100,
    daily: int = 10,
    total: int = 100,
    starts_in: timedelta = timedelta(seconds=-60),
    lasts: timedelta = timedelta(hours=1),
    **extra: Any,
) -> lottery_pb2.CreateLotteryRequest:
    starts = datetime.now(UTC) + starts_in
    fields: dict[str, Any] = {
        "name": "Lucky draw",
        "cost_points": cost,
        "starts_at": ts(starts),
        "ends_at": ts(starts + lasts),
        "per_member_daily": daily,
        "per_member_total": total,
        "prizes": prizes,
    }
    fields.update(extra)
    return lottery_pb2.CreateLotteryRequest(**fields)


async def lottery(
    running: Running, *, stock: int = 5, weight: int = 1, consolation_weight: int = 1, **kw: Any
) -> lottery_pb2.Lottery:
    """A lottery with one GOOD prize (a virtual item) and the consolation."""
    item = await running.api.item(stock=max(stock, 1))
    prizes = [
        prize("Gift card", GOOD, weight=weight, stock=stock, item_id=item.id),
        prize("Thanks for playing", NONE, weight=consolation_weight),
    ]
    return await stub(running).CreateLottery(create_request(prizes, **kw))


async def draw(
    running: Running, member_id: str, lottery_id: str, *, idem: str | None = None, **extra: Any
) -> lottery_pb2.DrawResponse:
    return await stub(running).Draw(
        lottery_pb2.DrawRequest(
            member_id=member_id, lottery_id=lottery_id, idempotency_key=idem or key(), **extra
        )
    )


def pg_rows(running: Running, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(running.app.stores.database_url) as conn:
        return list(conn.execute(sql, args).fetchall())
