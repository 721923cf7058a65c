"""Check-ins, the answers of the use cases, and the streak rule: pure values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from points.model import Balance


@dataclass(frozen=True)
class CheckIn:
    id: str
    member_id: str
    day: date  # the mall's local day (SURGE_TIME_ZONE)
    streak: int  # consecutive days up to and including this one
    points: int
    ledger_entry_id: str
    checked_in_at: datetime


@dataclass(frozen=True)
class CheckedIn:
    checkin: CheckIn
    next_reward: int  # what the next day's check-in credits if the streak goes on
    replayed: bool
    balance: Balance


@dataclass(frozen=True)
class CheckInStatus:
    member_id: str
    today: date
    streak: int  # 0 once a day was missed
    checked_in_today: bool
    next_reward: int
    last_day: date | None


def local_day(now: datetime, zone: ZoneInfo) -> date:
    return now.astimezone(zone).date()


def continues(last: CheckIn | None, today: date) -> bool:
    """Whether a check-in today carries the last one's streak on (it was yesterday's)."""
    return last is not None and last.day == today - timedelta(days=1)


def streak_today(last: CheckIn | None, today: date) -> int:
    """The streak a check-in today reaches: one more than yesterday's, else 1 (a missed
    day, no check-in yet, or a last day after today after the clock or zone moved back)."""
    return last.streak + 1 if last is not None and continues(last, today) else 1
