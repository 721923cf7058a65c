"""LotteryService's conversions: protobuf <-> lottery domain objects."""

from __future__ import annotations

from flashsale.model import Address
from lottery.model import Draw, Lottery, Prize, PrizeKind, PrizeSpec
from loyalty.v1 import lottery_pb2
from server import convert

_KINDS = {lottery_pb2.PRIZE_KIND_GOOD: PrizeKind.GOOD, lottery_pb2.PRIZE_KIND_NONE: PrizeKind.NONE}
_KINDS_PB = {v: k for k, v in _KINDS.items()}


def prize_specs(values: list[lottery_pb2.PrizeSpec]) -> list[PrizeSpec]:
    return [
        PrizeSpec(
            name=p.name,
            kind=_KINDS.get(p.kind),  # None: unspecified, refused naming the field
            item_id=p.item_id,
            weight=p.weight,
            stock=p.stock,
        )
        for p in values
    ]


def prize(value: Prize, odds: float | None = None) -> lottery_pb2.Prize:
    """A prize; with odds, also its counts (GetLottery), without, its terms (a draw)."""
    out = lottery_pb2.Prize(
        id=value.id,
        name=value.name,
        kind=_KINDS_PB[value.kind],
        item_id=value.item_id or "",
        weight=value.weight,
        stock=value.stock or 0,
        campaign_id=value.campaign_id or "",
    )
    if odds is not None:
        out.awarded = value.awarded
        out.remaining = value.remaining or 0
        out.odds = odds
    return out


def lottery(value: Lottery) -> lottery_pb2.Lottery:
    odds = value.odds()
    return lottery_pb2.Lottery(
        id=value.id,
        name=value.name,
        cost_points=value.cost_points,
        starts_at=convert.timestamp(value.starts_at),
        ends_at=convert.timestamp(value.ends_at),
        per_member_daily=value.per_member_daily,
        per_member_total=value.per_member_total,
        prizes=[prize(p, odds[p.id]) for p in value.prizes],
    )


def draw(value: Draw) -> lottery_pb2.LotteryDraw:
    return lottery_pb2.LotteryDraw(
        id=value.id,
        lottery_id=value.lottery_id,
        member_id=value.member_id,
        prize=prize(value.prize),
        cost_points=value.cost_points,
        redemption_id=value.redemption_id or "",
        create_time=convert.timestamp(value.created_at),
        idempotency_key=value.idempotency_key,
    )


def address(request: lottery_pb2.DrawRequest) -> Address | None:
    return convert.address_from_pb(request)
