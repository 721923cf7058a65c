"""Price rules: a campaign's time-windowed points prices (issue 16 item 1).

A rule prices a unit at a percentage of the campaign's points price (rounded up to a whole
point) or at a fixed points price, from starts_at until ends_at, for every member or only
for members holding one tier. The cash price is never changed by a rule.

Which rule is in force is decided by the server's clock at admission:
- a rule's window must lie inside the campaign's window;
- rules of one scope (the same tier, or all-tier) may not overlap: CreateCampaign and
  UpdateCampaign refuse them, naming the later rule, so there is never a tie to break;
- a tier rule in force for the member's tier beats an all-tier rule in force (a member day
  for gold members inside a sale for everybody);
- no rule in force: the campaign's own points price (the list price).

The price is stored on the redemption (list_points_total, price_rule_id), so a replay
returns what was paid even after the rule's window closed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common import validation
from common.errors import InvalidArgument

MAX_RULES = 20
MAX_PRICE = 10**12


@dataclass(frozen=True)
class PriceRule:
    name: str
    starts_at: datetime
    ends_at: datetime
    tier: str | None = None  # None: every member
    percent: int | None = None  # of the list price, 1..100
    points_price: int | None = None  # per unit
    id: str = ""  # set once stored

    def in_force(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def unit_price(self, list_price: int) -> int:
        if self.points_price is not None:
            return self.points_price
        assert self.percent is not None
        return -(-list_price * self.percent // 100)  # rounded up: never below the fraction


@dataclass(frozen=True)
class Price:
    """What a unit costs now, and why."""

    list_unit: int  # the campaign's points price
    unit: int  # the price paid per unit
    rule: PriceRule | None  # the rule that set it; None: the list price
    # When this price stops applying for this member: the rule's end, another rule's start,
    # or the campaign's end, whichever comes first.
    valid_until: datetime

    def total(self, quantity: int) -> int:
        return self.unit * quantity

    def list_total(self, quantity: int) -> int:
        return self.list_unit * quantity


def check_rules(
    rules: Sequence[PriceRule],
    *,
    campaign_starts_at: datetime,
    campaign_ends_at: datetime,
    cash_price_cents: int,
    tiers: Sequence[str],
) -> None:
    """InvalidArgument naming price_rules[i].<field> for the first rule that is wrong."""
    if len(rules) > MAX_RULES:
        raise InvalidArgument("price_rules", f"at most {MAX_RULES} rules per campaign")
    for i, rule in enumerate(rules):
        field = f"price_rules[{i}]"
        validation.text(f"{field}.name", rule.name, max_length=200, required=True)
        if rule.ends_at <= rule.starts_at:
            raise InvalidArgument(f"{field}.ends_at", "must be after starts_at")
        if rule.starts_at < campaign_starts_at or rule.ends_at > campaign_ends_at:
            raise InvalidArgument(
                f"{field}.starts_at", "the rule's window must lie inside the campaign's window"
            )
        if rule.tier is not None and rule.tier not in tiers:
            raise InvalidArgument(f"{field}.tier", f"must be one of {', '.join(tiers)}")
        if (rule.percent is None) == (rule.points_price is None):
            raise InvalidArgument(f"{field}.price", "give exactly one of percent or points_price")
        if rule.percent is not None:
            validation.int_range(f"{field}.percent", rule.percent, minimum=1, maximum=100)
        if rule.points_price is not None:
            validation.int_range(
                f"{field}.points_price",
                rule.points_price,
                minimum=0 if cash_price_cents else 1,
                maximum=MAX_PRICE,
            )
        for j, earlier in enumerate(rules[:i]):
            if earlier.tier == rule.tier and _overlap(earlier, rule):
                scope = f"tier {rule.tier}" if rule.tier else "every member"
                raise InvalidArgument(
                    f"{field}.starts_at",
                    f"overlaps price_rules[{j}] ({earlier.name}) for {scope}: "
                    "rules of one scope may not overlap",
                )


def price_now(
    rules: Sequence[PriceRule],
    *,
    list_price: int,
    tier: str | None,
    now: datetime,
    campaign_ends_at: datetime,
) -> Price:
    """The price a member holding `tier` pays now (a tier rule first, then an all-tier one)."""
    applicable = [r for r in rules if r.tier is None or r.tier == tier]
    chosen = next((r for r in applicable if r.tier is not None and r.in_force(now)), None)
    if chosen is None:
        chosen = next((r for r in applicable if r.tier is None and r.in_force(now)), None)
    # This price lasts until its rule ends or any applicable rule starts (which may change
    # it), and never past the campaign.
    changes = [r.starts_at for r in applicable if r.starts_at > now]
    changes.append(chosen.ends_at if chosen is not None else campaign_ends_at)
    changes.append(campaign_ends_at)
    unit = chosen.unit_price(list_price) if chosen is not None else list_price
    return Price(list_price, unit, chosen, min(changes))


def needs_tier(rules: Sequence[PriceRule], now: datetime) -> bool:
    """Whether the price now depends on the member's tier (a tier rule is in force)."""
    return any(r.tier is not None and r.in_force(now) for r in rules)


def rules_from_rows(rows: Any) -> tuple[PriceRule, ...]:
    """The JSON aggregate of campaign_price_rules rows (flashsale/campaigns.py's query)."""
    return tuple(
        PriceRule(
            id=str(r["id"]),
            name=str(r["name"]),
            starts_at=datetime.fromisoformat(r["starts_at"]),
            ends_at=datetime.fromisoformat(r["ends_at"]),
            tier=r.get("tier"),
            percent=r.get("percent"),
            points_price=r.get("points_price"),
        )
        for r in rows or ()
    )


# The rules of a campaign as one JSON array column, in the operator's order.
RULES_COLUMN = (
    "(SELECT coalesce(jsonb_agg(jsonb_build_object("
    "'id', r.id, 'name', r.name, 'starts_at', r.starts_at, 'ends_at', r.ends_at, "
    "'tier', r.tier, 'percent', r.percent, 'points_price', r.points_price) "
    "ORDER BY r.position), '[]'::jsonb) FROM campaign_price_rules r "
    "WHERE r.campaign_id = c.id AND r.replaced_at IS NULL) AS price_rules"
)


async def store_rules(cur: Any, campaign_id: str, rules: Sequence[PriceRule]) -> None:
    """Replaces the campaign's rules with `rules` (the old ones are kept, marked replaced:
    redemptions name the rule that priced them). Runs in the caller's transaction."""
    await cur.execute(
        "UPDATE campaign_price_rules SET replaced_at = now() "
        "WHERE campaign_id = %s AND replaced_at IS NULL",
        (campaign_id,),
    )
    for position, rule in enumerate(rules):
        await cur.execute(
            "INSERT INTO campaign_price_rules (campaign_id, position, name, starts_at, "
            "ends_at, tier, percent, points_price) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                campaign_id,
                position,
                rule.name,
                rule.starts_at,
                rule.ends_at,
                rule.tier,
                rule.percent,
                rule.points_price,
            ),
        )


async def current_rules(cur: Any, campaign_id: str) -> tuple[PriceRule, ...]:
    """The campaign's rules as stored (in the caller's transaction)."""
    await cur.execute(
        "SELECT id::text, name, starts_at, ends_at, tier, percent, points_price "
        "FROM campaign_price_rules WHERE campaign_id = %s AND replaced_at IS NULL "
        "ORDER BY position",
        (campaign_id,),
    )
    return tuple(PriceRule(**row) for row in await cur.fetchall())


def same_terms(a: Sequence[PriceRule], b: Sequence[PriceRule]) -> bool:
    """Whether two lists of rules price alike (their ids aside)."""
    return as_audit(a) == as_audit(b)


def as_audit(rules: Sequence[PriceRule]) -> list[dict[str, Any]]:
    """The rules as an audit event's content records them."""
    return [
        {
            "name": r.name,
            "starts_at": r.starts_at,
            "ends_at": r.ends_at,
            "tier": r.tier,
            "percent": r.percent,
            "points_price": r.points_price,
        }
        for r in rules
    ]


class TierCache:
    """Members' current tiers for tier-priced campaigns, read from PostgreSQL and kept for
    `ttl_s` (a tier changes by a daily evaluation or an operator, not within a sale's
    seconds). Bounded: at most `size` members, the oldest dropped first."""

    def __init__(
        self, read: Callable[[str], Awaitable[str]], *, ttl_s: float = 30.0, size: int = 100_000
    ) -> None:
        self._read = read
        self._ttl_s = ttl_s
        self._size = size
        self._tiers: dict[str, tuple[str, float]] = {}

    async def tier_of(self, member_id: str) -> str:
        found = self._tiers.get(member_id)
        now = time.monotonic()
        if found is not None and now - found[1] < self._ttl_s:
            return found[0]
        tier = await self._read(member_id)
        self._tiers.pop(member_id, None)
        if len(self._tiers) >= self._size:  # dicts keep insertion order: the oldest first
            del self._tiers[next(iter(self._tiers))]
        self._tiers[member_id] = (tier, now)
        return tier


def _overlap(a: PriceRule, b: PriceRule) -> bool:
    return a.starts_at < b.ends_at and b.starts_at < a.ends_at


class Pricer:
    """Prices a campaign's units for a member now; reads the member's tier only when a tier
    rule is in force (the common case, no rule or an all-tier one, costs no read)."""

    def __init__(self, current_tier: Callable[[str], Awaitable[str]]) -> None:
        self._tiers = TierCache(current_tier)

    async def price(
        self,
        rules: Sequence[PriceRule],
        *,
        list_price: int,
        member_id: str,
        now: datetime,
        campaign_ends_at: datetime,
        always_read_tier: bool = False,
    ) -> Price:
        tier = None
        if always_read_tier or needs_tier(rules, now):
            tier = await self._tiers.tier_of(member_id)
        return price_now(
            rules, list_price=list_price, tier=tier, now=now, campaign_ends_at=campaign_ends_at
        )
