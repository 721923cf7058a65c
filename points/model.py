"""The points ledger's values: what its use cases take and return, and its limits.

Plain frozen dataclasses, no I/O: the server converts them to protobuf (server/convert.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MAX_POINTS = 10**12
MAX_CENTS = 10**14
LEDGER_KINDS = ("earn", "redeem", "refund", "expire", "transfer", "adjust", "reversal")


@dataclass(frozen=True)
class Member:
    id: str
    display_name: str
    external_ref: str | None
    frozen: bool
    created_at: datetime
    frozen_reason: str | None = None


@dataclass(frozen=True)
class Balance:
    member_id: str
    balance: int
    held: int
    lifetime_earned: int = 0
    qualifying: int = 0
    expiring_soon: int = 0
    expiring_before: datetime | None = None
    tier: str = ""
    tier_valid_until: datetime | None = None
    debt: int = 0
    frozen: bool = False
    eligible: bool = True
    pending: int = 0  # purchase points not yet activated (not in balance)
    pending_until: datetime | None = None  # the next activation

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True)
class Earned:
    ledger_entry_id: str
    balance: Balance
    replayed: bool
    points: int = 0
    # EarnForPurchase only: the earn rules' shares, the base, and when pending points activate.
    applied: list[Any] = field(default_factory=list)  # earn_rules_eval.Applied
    base_points: int = 0
    pending_until: datetime | None = None


@dataclass(frozen=True)
class Preview:
    base_points: int
    tier: str
    points: int
    rules: list[Any]  # earn_rules_eval.Applied, in evaluation order


@dataclass(frozen=True)
class Reversed:
    points: int  # taken back in all: taken + debt
    taken: int  # from the balance
    debt: int  # recorded as debt
    ledger_entry_id: str
    balance: Balance
    replayed: bool


@dataclass(frozen=True)
class Transferred:
    transfer_id: str
    from_balance: Balance
    to_balance: Balance
    replayed: bool


@dataclass(frozen=True)
class TierStatus:
    member_id: str
    tier: str
    valid_until: datetime | None
    reached_tier: str
    manual_tier: str
    qualifying: int
    evaluated_at: datetime | None


@dataclass(frozen=True)
class Beneficiary:
    member_id: str
    display_name: str
    created_at: datetime


@dataclass(frozen=True)
class LedgerEntry:
    id: str
    member_id: str
    kind: str
    amount: int
    balance_after: int
    debt_change: int
    debt_after: int
    reference: str
    reason: str
    operator_id: str | None
    counterparty_id: str | None
    created_at: datetime
    actor: str | None = None  # the credential's subject of an operator-made entry
    earn_rule_ids: tuple[str, ...] = ()  # the earn rules that added points to it


@dataclass(frozen=True)
class LedgerPage:
    entries: list[LedgerEntry]
    next_page_token: str


@dataclass(frozen=True)
class ExpiryRun:
    members: int = 0
    points: int = 0
