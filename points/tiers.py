"""Tier rules, pure: which tier a member holds now, and what an evaluation changes.

- Qualifying points: points earned (by purchase, task or EarnPoints, less their reversals)
  over the rolling window (SURGE_TIER_WINDOW_MONTHS, start exclusive), never the balance.
- An evaluation that finds the qualifying points at or above a tier's threshold grants the
  highest such tier until now + SURGE_TIER_KEEP_MONTHS (re-qualifying extends it). A tier
  reached earlier is kept until then even if the points fall below its threshold.
- A manually assigned tier is a floor: the member holds the higher of the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from points.program import Program, Tier, add_months


@dataclass(frozen=True)
class TierState:
    """What PostgreSQL keeps per member."""

    tier: str | None
    valid_until: datetime | None
    manual: str | None


@dataclass(frozen=True)
class CurrentTier:
    tier: Tier
    valid_until: datetime | None  # None: the first tier, or held by the manual floor


def reached_level(program: Program, state: TierState, now: datetime) -> int:
    if state.tier is None or state.valid_until is None or state.valid_until <= now:
        return 0
    return program.level(state.tier)


def current(program: Program, state: TierState, now: datetime) -> CurrentTier:
    reached = reached_level(program, state, now)
    manual = program.level(state.manual) if state.manual else 0
    if manual > reached:
        return CurrentTier(program.tiers[manual], None)
    if reached == 0:
        return CurrentTier(program.tiers[0], None)
    return CurrentTier(program.tiers[reached], state.valid_until)


def evaluate(program: Program, state: TierState, qualifying: int, now: datetime) -> TierState:
    """The state after an evaluation at `now` with these qualifying points."""
    earned = program.tiers.index(program.tier_for(qualifying))
    if earned > 0 and earned >= reached_level(program, state, now):
        until = add_months(now, program.tier_keep_months)
        return TierState(program.tiers[earned].name, until, state.manual)
    if reached_level(program, state, now) > 0:
        return state  # kept until valid_until
    return TierState(None, None, state.manual)


def state_of(row: dict[str, Any]) -> TierState:
    """The tier state of a members row (store.MEMBER_STATE)."""
    return TierState(row["tier"], row["tier_valid_until"], row["manual_tier"])
