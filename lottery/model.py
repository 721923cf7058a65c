"""Lotteries, prizes and draws, and the odds rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class PrizeKind(StrEnum):
    GOOD = "GOOD"  # an item, with a finite stock
    NONE = "NONE"  # the consolation ("no prize"): never out of stock


@dataclass(frozen=True)
class PrizeSpec:
    """A prize as CreateLottery asks for it."""

    name: str
    kind: PrizeKind | None
    item_id: str
    weight: int
    stock: int


@dataclass(frozen=True)
class Prize:
    id: str
    position: int
    name: str
    kind: PrizeKind
    item_id: str | None
    campaign_id: str | None
    weight: int
    stock: int | None  # None: unlimited (the consolation)
    awarded: int

    @property
    def remaining(self) -> int | None:
        return None if self.stock is None else max(0, self.stock - self.awarded)

    @property
    def in_stock(self) -> bool:
        return self.stock is None or self.awarded < self.stock


@dataclass(frozen=True)
class Lottery:
    id: str
    name: str
    cost_points: int
    starts_at: datetime
    ends_at: datetime
    per_member_daily: int
    per_member_total: int
    prizes: tuple[Prize, ...]

    def odds(self) -> dict[str, float]:
        """Each prize's chance on the next draw, by PostgreSQL's counts: its weight over the
        sum of the weights of the prizes still in stock (0 once out of stock). The
        consolation is always in stock, so the sum is never 0."""
        total = sum(p.weight for p in self.prizes if p.in_stock)
        return {p.id: (p.weight / total if p.in_stock else 0.0) for p in self.prizes}


@dataclass(frozen=True)
class DrawRequest:
    member_id: str
    lottery_id: str
    idempotency_key: str
    has_address: bool = False


@dataclass(frozen=True)
class Draw:
    id: str
    lottery_id: str
    member_id: str
    prize: Prize
    cost_points: int
    redemption_id: str | None
    idempotency_key: str
    created_at: datetime


@dataclass(frozen=True)
class Drawn:
    draw: Draw
    replayed: bool
