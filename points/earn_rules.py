"""Earn rules: what operators define (a multiplier or a bonus, its conditions, budget, cap
and priority), checked here, stored in earn_rules, audited. Evaluating them against a
purchase is earn_rules_eval.py. README.md, "Earn rules".

Stacking, one explicit rule: rules are evaluated by priority (higher first, then the older
rule). Of the matching MULTIPLIER rules only the first applies (multipliers never multiply
each other); every matching BONUS adds. Budgets and caps are per rule: a rule's budget is
its own (one live rule per name), so two rules never draw on one budget."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

import auditlog
from cards import holdings
from common import actor, validation
from common.errors import AlreadyExists, InvalidArgument, NotFound
from points.model import MAX_CENTS, MAX_POINTS
from points.program import Program

KINDS = ("MULTIPLIER", "BONUS")
MAX_MULTIPLIER = Decimal(100)
MAX_LIST = 64  # values per condition list
MAX_LABEL = 100  # a channel, category (as an item's) or tier name

COLUMNS = (
    "id::text, name, kind, multiplier, bonus_points, days_of_month, weekdays, hours, "
    "starts_at, ends_at, tiers, min_amount_cents, channels, categories, time_zone, "
    "budget_points, given_points, per_member_cap, priority, created_at, ended_at, card_types"
)
# What operators read: a rule without a budget keeps no running total on its row (the
# earns would queue on it), so its given points are summed from earn_rule_members.
_SHOWN = COLUMNS.replace(
    "given_points,",
    "CASE WHEN budget_points IS NULL THEN (SELECT coalesce(sum(m.points), 0)::bigint "
    "FROM earn_rule_members m WHERE m.rule_id = earn_rules.id) ELSE given_points END "
    "AS given_points,",
)


@dataclass(frozen=True)
class Conditions:
    days_of_month: tuple[int, ...] = ()
    weekdays: tuple[int, ...] = ()  # 1 = Monday .. 7 = Sunday
    hours: tuple[int, ...] = ()
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    tiers: tuple[str, ...] = ()
    min_amount_cents: int = 0
    channels: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # The member holds an ACTIVE card of one of these types (cards/): a card type's points
    # multiplier is a MULTIPLIER rule with this condition.
    card_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class EarnRule:
    id: str
    name: str
    kind: str
    multiplier: Decimal | None
    bonus_points: int | None
    conditions: Conditions
    time_zone: str
    budget_points: int | None = None
    given_points: int = 0
    per_member_cap: int | None = None
    priority: int = 0
    created_at: datetime | None = None
    ended_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _ints(name: str, values: tuple[int, ...], low: int, high: int) -> tuple[int, ...]:
    if len(values) > MAX_LIST:
        raise InvalidArgument(name, f"at most {MAX_LIST} values")
    for v in values:
        if not low <= v <= high:
            raise InvalidArgument(name, f"values must be {low}..{high}, got {v}")
    return tuple(sorted(set(values)))


def _labels(name: str, values: tuple[str, ...]) -> tuple[str, ...]:
    if len(values) > MAX_LIST:
        raise InvalidArgument(name, f"at most {MAX_LIST} values")
    for v in values:
        validation.text(name, v, max_length=MAX_LABEL, required=True)
    return tuple(sorted(set(values)))


def _calendar_possible(
    days: tuple[int, ...], start: datetime, end: datetime, zone: ZoneInfo
) -> bool:
    """Whether any of the days of month occurs in [start, end) in the zone (a window of a
    year or more holds every day 1..31)."""
    first, last = start.astimezone(zone).date(), end.astimezone(zone).date()
    if (last - first).days >= 366:
        return True
    year, month = first.year, first.month
    while date(year, month, 1) <= last:
        for day in days:
            if day <= calendar.monthrange(year, month)[1]:
                d = date(year, month, day)
                if first <= d <= last:
                    return True
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return False


# Moments a rule or a preview may name: a zone's offset applied to year 1 or 9999 leaves
# what datetime can hold (an OverflowError, not the caller's INVALID_ARGUMENT).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def check_moment(field_name: str, moment: datetime | None) -> None:
    if moment is not None and not EARLIEST <= moment < LATEST:
        raise InvalidArgument(field_name, "must be between 1970-01-01 and 9000-01-01")


def validate(rule: EarnRule, program: Program, now: datetime) -> EarnRule:
    """The rule as stored, or InvalidArgument naming the first bad field."""
    name = validation.text("name", rule.name, max_length=validation.MAX_NAME_LENGTH, required=True)
    if rule.kind not in KINDS:
        raise InvalidArgument("kind", "must be EARN_RULE_KIND_MULTIPLIER or _BONUS")
    multiplier, bonus = None, None
    if rule.kind == "MULTIPLIER":
        multiplier = rule.multiplier
        if multiplier is None or not multiplier.is_finite() or multiplier <= 1:
            raise InvalidArgument("multiplier", "must be a number above 1 (e.g. 2 = double)")
        if multiplier > MAX_MULTIPLIER:
            raise InvalidArgument("multiplier", f"must be at most {MAX_MULTIPLIER}")
        if rule.bonus_points:
            raise InvalidArgument("bonus_points", "must be 0 for a MULTIPLIER rule")
    else:
        bonus = validation.int_range(
            "bonus_points", rule.bonus_points or 0, minimum=1, maximum=MAX_POINTS
        )
        if rule.multiplier is not None:
            raise InvalidArgument("multiplier", "must be empty for a BONUS rule")
    zone_name = rule.time_zone or program.time_zone
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument("time_zone", f"{zone_name!r} is not an IANA time zone") from None
    c = rule.conditions
    check_moment("starts_at", c.starts_at)
    check_moment("ends_at", c.ends_at)
    days = _ints("days_of_month", c.days_of_month, 1, 31)
    weekdays = _ints("weekdays", c.weekdays, 1, 7)
    hours = _ints("hours", c.hours, 0, 23)
    if c.ends_at is not None and c.ends_at <= now:
        raise InvalidArgument("ends_at", "must be in the future")
    if c.starts_at is not None and c.ends_at is not None:
        if c.starts_at >= c.ends_at:
            raise InvalidArgument("ends_at", "must be after starts_at")
        if days and not _calendar_possible(days, c.starts_at, c.ends_at, zone):
            raise InvalidArgument(
                "days_of_month", "none of these days occurs between starts_at and ends_at"
            )
    tier_names = _labels("tiers", c.tiers)
    for t in tier_names:
        if program.tier(t) is None:
            raise InvalidArgument("tiers", f"{t!r} is not a tier of SURGE_TIERS")
    validation.int_range("min_amount_cents", c.min_amount_cents, minimum=0, maximum=MAX_CENTS)
    budget = rule.budget_points or None
    if budget is not None:
        validation.int_range("budget_points", budget, minimum=1, maximum=MAX_POINTS)
    cap = rule.per_member_cap or None
    if cap is not None:
        validation.int_range("per_member_cap", cap, minimum=1, maximum=MAX_POINTS)
        if budget is not None and cap > budget:
            # The cap could never be reached: the rule's budget runs out first.
            raise InvalidArgument("per_member_cap", "must not exceed budget_points")
    validation.int_range("priority", rule.priority, minimum=-1000, maximum=1000)
    return EarnRule(
        id="",
        name=name,
        kind=rule.kind,
        multiplier=multiplier,
        bonus_points=bonus,
        conditions=Conditions(
            days,
            weekdays,
            hours,
            c.starts_at,
            c.ends_at,
            tier_names,
            c.min_amount_cents,
            _labels("channels", c.channels),
            _labels("categories", c.categories),
            _labels("card_types", c.card_types),
        ),
        time_zone=zone_name,
        budget_points=budget,
        per_member_cap=cap,
        priority=rule.priority,
    )


def from_row(row: dict[str, Any]) -> EarnRule:
    return EarnRule(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        multiplier=row["multiplier"],
        bonus_points=row["bonus_points"],
        conditions=Conditions(
            tuple(row["days_of_month"]),
            tuple(row["weekdays"]),
            tuple(row["hours"]),
            row["starts_at"],
            row["ends_at"],
            tuple(row["tiers"]),
            row["min_amount_cents"],
            tuple(row["channels"]),
            tuple(row["categories"]),
            tuple(row["card_types"]),
        ),
        time_zone=row["time_zone"],
        budget_points=row["budget_points"],
        given_points=row["given_points"],
        per_member_cap=row["per_member_cap"],
        priority=row["priority"],
        created_at=row["created_at"],
        ended_at=row["ended_at"],
    )


def _content(rule: EarnRule) -> dict[str, Any]:
    c = rule.conditions
    return {
        "name": rule.name,
        "kind": rule.kind,
        "multiplier": str(rule.multiplier) if rule.multiplier is not None else None,
        "bonus_points": rule.bonus_points,
        "days_of_month": list(c.days_of_month),
        "weekdays": list(c.weekdays),
        "hours": list(c.hours),
        "starts_at": c.starts_at,
        "ends_at": c.ends_at,
        "tiers": list(c.tiers),
        "min_amount_cents": c.min_amount_cents,
        "channels": list(c.channels),
        "categories": list(c.categories),
        "card_types": list(c.card_types),
        "time_zone": rule.time_zone,
        "budget_points": rule.budget_points,
        "per_member_cap": rule.per_member_cap,
        "priority": rule.priority,
    }


class EarnRules:
    def __init__(self, pool: AsyncConnectionPool, program: Program) -> None:
        self._pool, self._program = pool, program

    async def create(self, rule: EarnRule, *, now: datetime) -> EarnRule:
        r = validate(rule, self._program, now)
        c = r.conditions
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            unknown = await holdings.unknown_card_types(cur, c.card_types)
            if unknown:
                raise InvalidArgument("card_types", f"{unknown[0]!r} is not a card type")
            try:
                await cur.execute(
                    "INSERT INTO earn_rules (name, kind, multiplier, bonus_points, days_of_month, "
                    "weekdays, hours, starts_at, ends_at, tiers, min_amount_cents, channels, "
                    "categories, time_zone, budget_points, per_member_cap, priority, created_by, "
                    "card_types) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                    f"%s, %s, %s, %s, %s) RETURNING {_SHOWN}",
                    (
                        r.name,
                        r.kind,
                        r.multiplier,
                        r.bonus_points,
                        list(c.days_of_month),
                        list(c.weekdays),
                        list(c.hours),
                        c.starts_at,
                        c.ends_at,
                        list(c.tiers),
                        c.min_amount_cents,
                        list(c.channels),
                        list(c.categories),
                        r.time_zone,
                        r.budget_points,
                        r.per_member_cap,
                        r.priority,
                        _subject(),
                        list(c.card_types),
                    ),
                )
            except psycopg.errors.UniqueViolation as e:
                raise AlreadyExists("earn_rule", "name", r.name) from e
            row = await cur.fetchone()
            assert row is not None
            await auditlog.record(
                conn,
                auditlog.CREATE_EARN_RULE,
                target_kind=auditlog.EARN_RULE,
                target_id=row["id"],
                content=_content(r),
            )
        return from_row(row)

    async def get(self, rule_id: str) -> EarnRule:
        rule_id = validation.uuid_id("id", rule_id)
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"SELECT {_SHOWN} FROM earn_rules WHERE id = %s", (rule_id,)
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound("earn_rule", rule_id)
        return from_row(row)

    async def list(self, *, include_ended: bool) -> list[EarnRule]:
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"SELECT {_SHOWN} FROM earn_rules WHERE %s OR ended_at IS NULL "
                "ORDER BY priority DESC, created_at, id",
                (include_ended,),
            )
            return [from_row(r) for r in await cur.fetchall()]

    async def end(self, rule_id: str) -> EarnRule:
        rule_id = validation.uuid_id("id", rule_id)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"UPDATE earn_rules SET ended_at = now() WHERE id = %s AND ended_at IS NULL "
                f"RETURNING {_SHOWN}",
                (rule_id,),
            )
            row = await cur.fetchone()
            if row is not None:
                await auditlog.record(
                    conn,
                    auditlog.END_EARN_RULE,
                    target_kind=auditlog.EARN_RULE,
                    target_id=rule_id,
                    content={"name": row["name"]},
                )
        return from_row(row) if row is not None else await self.get(rule_id)


def _subject() -> str:
    return actor.current().subject
