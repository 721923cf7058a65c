"""Evaluating earn rules against a purchase (README.md, "Earn rules").

A rule matches when all its conditions hold at the purchase's moment in the rule's time
zone. Order: priority descending, then the older rule. The first matching MULTIPLIER that
gives points gives floor(base x (multiplier - 1)), within its budget and the member's cap;
later multipliers are NOT_STACKED (one whose budget or cap left it nothing does not block
the next). Every matching BONUS gives its points. Each rule gives what its budget and the
member's cap leave: part of what it wanted, or nothing (limited_by says why).

Budgets hold under concurrency because the earn locks the budgeted rule rows (after the
member's row: members, then earn rules by id) and the CHECK given_points <= budget_points
would refuse anything else. Caps are per member, under the member's row lock."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from zoneinfo import ZoneInfo

from cards import holdings
from points.earn_rules import COLUMNS, EarnRule, from_row
from points.store import Cursor

BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
MEMBER_CAP_REACHED = "MEMBER_CAP_REACHED"
NOT_STACKED = "NOT_STACKED"


@dataclass(frozen=True)
class Purchase:
    at: datetime
    tier: str
    amount_cents: int
    channel: str = ""
    category: str = ""
    card_types: frozenset[str] = frozenset()  # of the member's ACTIVE cards


@dataclass(frozen=True)
class Applied:
    rule_id: str
    name: str
    kind: str
    points: int
    wanted: int
    limited_by: str = ""


def matches(rule: EarnRule, p: Purchase) -> bool:
    c = rule.conditions
    if rule.ended_at is not None and rule.ended_at <= p.at:
        return False
    if c.starts_at is not None and p.at < c.starts_at:
        return False
    if c.ends_at is not None and p.at >= c.ends_at:
        return False
    local = p.at.astimezone(ZoneInfo(rule.time_zone))
    if c.days_of_month and local.day not in c.days_of_month:
        return False
    if c.weekdays and local.isoweekday() not in c.weekdays:
        return False
    if c.hours and local.hour not in c.hours:
        return False
    if c.tiers and p.tier not in c.tiers:
        return False
    if p.amount_cents < c.min_amount_cents:
        return False
    if c.channels and p.channel not in c.channels:
        return False
    if c.card_types and not set(c.card_types) & p.card_types:
        return False
    return not (c.categories and p.category not in c.categories)


def wanted(rules: list[EarnRule], base: int, p: Purchase) -> list[tuple[EarnRule, int, str]]:
    """(rule, points it asks for, "") for each matching rule, in order. Which multiplier
    applies is decided by `evaluate`, after budgets and caps: the first that gives points."""
    out: list[tuple[EarnRule, int, str]] = []
    for rule in rules:
        if not matches(rule, p):
            continue
        if rule.kind == "BONUS":
            out.append((rule, rule.bonus_points or 0, ""))
            continue
        assert rule.multiplier is not None
        extra = int((Decimal(base) * (rule.multiplier - 1)).to_integral_value(ROUND_FLOOR))
        out.append((rule, extra, ""))
    return out


async def live_rules(cur: Cursor, at: datetime) -> list[EarnRule]:
    await cur.execute(
        f"SELECT {COLUMNS} FROM earn_rules WHERE (ended_at IS NULL OR ended_at > %s) "
        "AND (starts_at IS NULL OR starts_at <= %s) AND (ends_at IS NULL OR ends_at > %s) "
        "ORDER BY priority DESC, created_at, id",
        (at, at, at),
    )
    return [from_row(r) for r in await cur.fetchall()]


async def evaluate(
    cur: Cursor, member_id: str, base: int, p: Purchase, *, give: bool
) -> list[Applied]:
    """What each matching rule gives. give=True (inside the earn's transaction, member row
    locked): locks the rule rows by id, takes the points from budgets and caps. give=False
    (a preview): reads only."""
    rules = await live_rules(cur, p.at)
    if any(r.conditions.card_types for r in rules):  # read only when a rule asks
        p = replace(p, card_types=await holdings.active_card_types(cur, member_id))
    asks = wanted(rules, base, p)
    ids = sorted(r.id for r, n, why in asks if n > 0 and not why and not _spent_out(r))
    # Only a budget is shared between members: a rule without one is neither locked nor
    # updated (its cap is per member, under the member's row lock), so a member day's
    # earns do not queue on its row. Its given points are summed from earn_rule_members.
    budgeted = {r.id for r, _, _ in asks if r.budget_points is not None}
    given: dict[str, tuple[int, int | None, int]] = {}  # id -> (given, budget, member's)
    if ids:
        locked = sorted(set(ids) & budgeted)
        if give and locked:
            # The budgets' rows, by id; the read below (a new statement under READ
            # COMMITTED) then sees what the earns before this one gave.
            await cur.execute(
                "SELECT 1 FROM earn_rules WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE",
                (locked,),
            )
        await cur.execute(
            "SELECT r.id::text AS id, r.given_points, r.budget_points, "
            "coalesce(m.points, 0) AS member_points FROM earn_rules r "
            "LEFT JOIN earn_rule_members m ON m.rule_id = r.id AND m.member_id = %s "
            "WHERE r.id = ANY(%s::uuid[])",
            (member_id, ids),
        )
        for row in await cur.fetchall():
            given[row["id"]] = (row["given_points"], row["budget_points"], row["member_points"])
    applied: list[Applied] = []
    multiplied = False  # a multiplier gave points: the later ones do not stack on it
    for rule, n, why in asks:
        if rule.kind == "MULTIPLIER" and multiplied:
            why = NOT_STACKED
        if why or n <= 0:
            applied.append(Applied(rule.id, rule.name, rule.kind, 0, n, why))
            continue
        if _spent_out(rule):
            applied.append(Applied(rule.id, rule.name, rule.kind, 0, n, BUDGET_EXHAUSTED))
            continue
        spent, budget, member_points = given[rule.id]
        points, limited = n, ""
        if budget is not None and spent + points > budget:
            points, limited = max(0, budget - spent), BUDGET_EXHAUSTED
        if rule.per_member_cap is not None and member_points + points > rule.per_member_cap:
            points, limited = max(0, rule.per_member_cap - member_points), MEMBER_CAP_REACHED
        if give and points > 0:
            # The CHECK (given_points <= budget_points) is the last word if this were wrong.
            if rule.id in budgeted:
                await cur.execute(
                    "UPDATE earn_rules SET given_points = given_points + %s WHERE id = %s",
                    (points, rule.id),
                )
            await cur.execute(
                "INSERT INTO earn_rule_members (rule_id, member_id, points) VALUES (%s, %s, %s) "
                "ON CONFLICT (rule_id, member_id) DO UPDATE "
                "SET points = earn_rule_members.points + excluded.points",
                (rule.id, member_id, points),
            )
        # A multiplier whose budget or cap left it nothing does not block the next one.
        multiplied = multiplied or (rule.kind == "MULTIPLIER" and points > 0)
        applied.append(Applied(rule.id, rule.name, rule.kind, points, n, limited))
    return applied


def _spent_out(rule: EarnRule) -> bool:
    """A budget read spent out stays so (given_points only grows): no need to lock its row,
    so a spent rule stops serialising the earns that match it."""
    return rule.budget_points is not None and rule.given_points >= rule.budget_points


def to_json(applied: list[Applied]) -> str:
    return json.dumps(
        [
            {
                "rule_id": a.rule_id,
                "name": a.name,
                "kind": a.kind,
                "points": a.points,
                "wanted": a.wanted,
                "limited_by": a.limited_by,
            }
            for a in applied
        ]
    )


def from_json(value: object) -> list[Applied]:
    items = value if isinstance(value, list) else json.loads(str(value or "[]"))
    return [
        Applied(i["rule_id"], i["name"], i["kind"], i["points"], i["wanted"], i["limited_by"])
        for i in items
    ]
