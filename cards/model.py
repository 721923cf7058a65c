"""Member cards' values: card types, issued batches, cards and their states. Plain frozen
dataclasses, no I/O: the server converts them to protobuf."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class CardState(StrEnum):
    """ISSUED -> ACTIVE (opened for a member) -> LOST <-> ACTIVE (unlocked); ACTIVE or LOST
    -> REPLACED (final: the number never works again)."""

    ISSUED = "ISSUED"
    ACTIVE = "ACTIVE"
    LOST = "LOST"
    REPLACED = "REPLACED"


@dataclass(frozen=True)
class CardType:
    code: str
    name: str
    default_tier: str  # "" for none
    prefix: str
    issued: int  # numbers issued so far (the next serial)
    created_at: datetime


@dataclass(frozen=True)
class CardBatch:
    id: str
    card_type: str
    request_id: str
    count: int
    first_number: str
    last_number: str
    created_at: datetime
    replayed: bool = False  # a retry of an issue already made: nothing new was written


@dataclass(frozen=True)
class Card:
    number: str
    card_type: str
    batch_id: str
    state: CardState
    member_id: str  # "" while ISSUED
    opened_at: datetime | None
    lost_at: datetime | None


@dataclass(frozen=True)
class CardCheck:
    """CheckCard's answer: `valid` says the number is well formed with a right check digit;
    `card` is None for a valid number that was never issued (or an invalid one)."""

    number: str
    valid: bool
    card: Card | None


@dataclass(frozen=True)
class NumbersPage:
    numbers: list[str]
    next_page_token: str  # "" on the last page
