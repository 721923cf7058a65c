"""The loyalty program's rules, from environment variables, loaded once at start-up.

Every process of one deployment must run with the same program: PostgreSQL keeps the
per-member results (lots and their expiry, tiers, eligibility), not the rules.

| variable | default | meaning |
| --- | --- | --- |
| SURGE_CURRENCY | CNY | the mall's currency (ISO 4217): every cash amount (prices, purchases, payments) is in its cents |
| SURGE_EARN_RATE | 1 | points per currency unit (100 cents) of a purchase, before the tier multiplier |
| SURGE_TIERS | base:0:1,silver:50000:1.5,gold:150000:2,platinum:250000:2.5 | name:threshold:multiplier, thresholds ascending from 0 |
| SURGE_TIER_WINDOW_MONTHS | 12 | qualifying points are those earned over this rolling window |
| SURGE_TIER_KEEP_MONTHS | 12 | a reached tier is kept this long after the last evaluation that reached it |
| SURGE_POINTS_EXPIRY | months:12 | a lot's expiry: months:N after the earn, year-end:N (end of the Nth calendar year after the earn's), or never |
| SURGE_EXPIRING_SOON_DAYS | 30 | the balance's expiring_soon covers this many days |
| SURGE_REDEMPTION_THRESHOLD | 0 | lifetime earned points a member needs before redeeming (0 = none) |
| SURGE_MAX_BENEFICIARIES | 8 | beneficiaries a member may designate for transfers |
| SURGE_TASK_RULES | register:50:1,share:10:,review:20: | name:points:cap (empty cap = no cap) |
| SURGE_LEDGER_JOB_INTERVAL_SECONDS | 60 | how often the expiry job runs |
| SURGE_TIER_EVALUATION_INTERVAL_SECONDS | 86400 | how often every member's tier is evaluated |
| SURGE_TIME_ZONE | UTC | the mall's local day and time (an IANA name such as Asia/Shanghai): a daily check-in is once per local day; earn rules' calendars (a rule may name its own zone) |
| SURGE_CHECKIN_REWARDS | 10,10,10,10,10,10,100 | points for day 1..N of a check-in streak; after day N the cycle starts again at day 1 |
| SURGE_EARN_PENDING_DAYS | 0 | a purchase's points stay pending this many days (0: spendable at once) |
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.env import ConfigError, env_int, env_positive_float
from common.validation import CURRENCY_RE

_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")  # with fullmatch, never "$"


# One error for every malformed setting, whoever loads it.
ProgramError = ConfigError


@dataclass(frozen=True)
class Tier:
    name: str
    threshold: int  # qualifying points over the rolling window
    multiplier: Decimal  # applied to points earned by spend


@dataclass(frozen=True)
class TaskRule:
    name: str
    points: int
    cap: int | None  # completions per member; None = no cap


@dataclass(frozen=True)
class ExpiryPolicy:
    """When a lot earned at a given moment expires: valid while now < expires_at."""

    kind: str  # "months", "year-end" or "never"
    count: int = 0

    def expires_at(self, earned_at: datetime) -> datetime | None:
        if self.kind == "never":
            return None
        at = earned_at.astimezone(UTC)
        if self.kind == "year-end":
            # The first instant after the end of the count-th calendar year after the earn's.
            return datetime(at.year + self.count + 1, 1, 1, tzinfo=UTC)
        return add_months(at, self.count)

    def __str__(self) -> str:
        return "never" if self.kind == "never" else f"{self.kind}:{self.count}"


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later; a day past the month's end is its last day."""
    total = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(total, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


DEFAULT_TIERS = (
    Tier("base", 0, Decimal(1)),
    Tier("silver", 50_000, Decimal("1.5")),
    Tier("gold", 150_000, Decimal(2)),
    Tier("platinum", 250_000, Decimal("2.5")),
)
DEFAULT_CHECKIN_REWARDS = (10, 10, 10, 10, 10, 10, 100)
MAX_CHECKIN_DAYS = 366
MAX_CHECKIN_REWARD = 1_000_000
DEFAULT_TASKS = (
    TaskRule("register", 50, 1),
    TaskRule("share", 10, None),
    TaskRule("review", 20, None),
)


@dataclass(frozen=True, kw_only=True)
class Program:
    # One currency for the whole mall: campaigns' cash prices, purchases and payments carry
    # cents of it and no currency of their own.
    currency: str = "CNY"
    earn_rate: Decimal = Decimal(1)  # points per currency unit (100 cents)
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    tier_window_months: int = 12
    tier_keep_months: int = 12
    expiry: ExpiryPolicy = field(default_factory=lambda: ExpiryPolicy("months", 12))
    expiring_soon_days: int = 30
    redemption_threshold: int = 0
    max_beneficiaries: int = 8
    task_rules: tuple[TaskRule, ...] = DEFAULT_TASKS
    job_interval_seconds: float = 60.0
    tier_evaluation_interval_seconds: float = 86_400.0
    # The mall's local day and time (daily check-in; earn rules' default calendar): an
    # IANA zone name, checked at start-up.
    time_zone: str = "UTC"
    # Daily check-in: points for day 1..N of a streak, then day 1's again (a cycle).
    checkin_rewards: tuple[int, ...] = DEFAULT_CHECKIN_REWARDS
    earn_pending_days: int = 0  # a purchase's points are pending this long (0: not at all)

    def __post_init__(self) -> None:
        _zone(self.time_zone)
        if not self.checkin_rewards or len(self.checkin_rewards) > MAX_CHECKIN_DAYS:
            raise ProgramError(
                f"SURGE_CHECKIN_REWARDS needs 1 to {MAX_CHECKIN_DAYS} rewards, "
                f"got {len(self.checkin_rewards)}"
            )
        if any(not 0 < r <= MAX_CHECKIN_REWARD for r in self.checkin_rewards):
            raise ProgramError(
                f"SURGE_CHECKIN_REWARDS: every reward must be 1..{MAX_CHECKIN_REWARD} points"
            )
        if not CURRENCY_RE.fullmatch(self.currency):
            raise ProgramError(
                f"SURGE_CURRENCY must be an ISO 4217 code (three upper-case letters), "
                f"got {self.currency!r}"
            )
        if not self.tiers or self.tiers[0].threshold != 0:
            raise ProgramError("SURGE_TIERS: the first tier's threshold must be 0")
        for lower, upper in zip(self.tiers, self.tiers[1:], strict=False):
            if upper.threshold <= lower.threshold:
                raise ProgramError("SURGE_TIERS: thresholds must be strictly ascending")
        if len({t.name for t in self.tiers}) != len(self.tiers):
            raise ProgramError("SURGE_TIERS: tier names must be unique")
        if len({r.name for r in self.task_rules}) != len(self.task_rules):
            raise ProgramError("SURGE_TASK_RULES: rule names must be unique")

    # -- Rules ---------------------------------------------------------------------------

    def tier(self, name: str | None) -> Tier | None:
        return next((t for t in self.tiers if t.name == name), None)

    def level(self, name: str | None) -> int:
        """A tier's rank on the ladder; an unknown name (a ladder changed since) is 0."""
        return next((i for i, t in enumerate(self.tiers) if t.name == name), 0)

    def tier_for(self, qualifying: int) -> Tier:
        reached = self.tiers[0]
        for tier in self.tiers:
            if qualifying >= tier.threshold:
                reached = tier
        return reached

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.time_zone)

    def checkin_reward(self, streak: int) -> int:
        """The points for the `streak`-th consecutive day (1-based): the configured days in
        a cycle, so day N+1 earns day 1's reward again."""
        return self.checkin_rewards[(streak - 1) % len(self.checkin_rewards)]

    def task(self, name: str) -> TaskRule | None:
        return next((r for r in self.task_rules if r.name == name), None)

    def points_for_purchase(self, amount_cents: int, multiplier: Decimal) -> int:
        """amount (cents) / 100 x earn rate x tier multiplier, rounded down to whole points."""
        exact = Decimal(amount_cents) * self.earn_rate * multiplier / 100
        return int(exact.to_integral_value(rounding=ROUND_FLOOR))

    # -- Loading -------------------------------------------------------------------------

    @classmethod
    def load(cls, env: Mapping[str, str]) -> Program:
        return cls(
            currency=env.get("SURGE_CURRENCY") or "CNY",
            earn_rate=_decimal(env, "SURGE_EARN_RATE", Decimal(1)),
            tiers=_tiers(env.get("SURGE_TIERS") or ""),
            tier_window_months=env_int(env, "SURGE_TIER_WINDOW_MONTHS", 12, 1, 120),
            tier_keep_months=env_int(env, "SURGE_TIER_KEEP_MONTHS", 12, 0, 120),
            expiry=_expiry(env.get("SURGE_POINTS_EXPIRY") or "months:12"),
            expiring_soon_days=env_int(env, "SURGE_EXPIRING_SOON_DAYS", 30, 1, 3660),
            redemption_threshold=env_int(env, "SURGE_REDEMPTION_THRESHOLD", 0, 0, 10**12),
            max_beneficiaries=env_int(env, "SURGE_MAX_BENEFICIARIES", 8, 0, 1000),
            task_rules=_tasks(env.get("SURGE_TASK_RULES")),
            job_interval_seconds=env_positive_float(env, "SURGE_LEDGER_JOB_INTERVAL_SECONDS", 60.0),
            tier_evaluation_interval_seconds=env_positive_float(
                env, "SURGE_TIER_EVALUATION_INTERVAL_SECONDS", 86_400.0
            ),
            time_zone=env.get("SURGE_TIME_ZONE") or "UTC",
            checkin_rewards=_checkin_rewards(env.get("SURGE_CHECKIN_REWARDS")),
            earn_pending_days=env_int(env, "SURGE_EARN_PENDING_DAYS", 0, 0, 366),
        )


def _decimal(env: Mapping[str, str], name: str, default: Decimal) -> Decimal:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return _positive_decimal(name, raw)


def _positive_decimal(name: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ProgramError(f"{name} must be a number, got {raw!r}") from None
    if not value.is_finite() or value <= 0 or value > 1000:
        raise ProgramError(f"{name} must be above 0 and at most 1000, got {raw!r}")
    return value


def _tiers(raw: str) -> tuple[Tier, ...]:
    if not raw.strip():
        return DEFAULT_TIERS
    tiers = []
    for part in raw.split(","):
        bits = part.strip().split(":")
        if len(bits) != 3 or not _NAME_RE.fullmatch(bits[0]):
            raise ProgramError(f"SURGE_TIERS: {part!r} is not name:threshold:multiplier")
        try:
            threshold = int(bits[1])
        except ValueError:
            raise ProgramError(f"SURGE_TIERS: {part!r} has a non-integer threshold") from None
        if threshold < 0:
            raise ProgramError(f"SURGE_TIERS: {part!r} has a negative threshold")
        tiers.append(Tier(bits[0], threshold, _positive_decimal("SURGE_TIERS", bits[2])))
    return tuple(tiers)


def _tasks(raw: str | None) -> tuple[TaskRule, ...]:
    if raw is None:
        return DEFAULT_TASKS
    rules = []
    for part in raw.split(","):
        if not part.strip():
            continue
        bits = part.strip().split(":")
        if len(bits) not in (2, 3) or not _NAME_RE.fullmatch(bits[0]):
            raise ProgramError(f"SURGE_TASK_RULES: {part!r} is not name:points:cap")
        try:
            points = int(bits[1])
            cap = int(bits[2]) if len(bits) == 3 and bits[2] else None
        except ValueError:
            raise ProgramError(f"SURGE_TASK_RULES: {part!r} has a non-integer number") from None
        if points <= 0 or (cap is not None and cap <= 0):
            raise ProgramError(f"SURGE_TASK_RULES: {part!r}: points and cap must be positive")
        rules.append(TaskRule(bits[0], points, cap))
    return tuple(rules)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ProgramError(
            f"SURGE_TIME_ZONE must be an IANA time zone name (such as Asia/Shanghai), got {name!r}"
        ) from None


def _checkin_rewards(raw: str | None) -> tuple[int, ...]:
    if raw is None or not raw.strip():
        return DEFAULT_CHECKIN_REWARDS
    try:
        return tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ProgramError(
            f"SURGE_CHECKIN_REWARDS must be whole points separated by commas, got {raw!r}"
        ) from None


def _expiry(raw: str) -> ExpiryPolicy:
    if raw == "never":
        return ExpiryPolicy("never")
    kind, _, count = raw.partition(":")
    if kind not in ("months", "year-end"):
        raise ProgramError(
            f"SURGE_POINTS_EXPIRY must be months:N, year-end:N or never, got {raw!r}"
        )
    try:
        n = int(count)
    except ValueError:
        raise ProgramError(f"SURGE_POINTS_EXPIRY: {raw!r} needs an integer count") from None
    if not (1 if kind == "months" else 0) <= n <= 1200:
        raise ProgramError(f"SURGE_POINTS_EXPIRY: {raw!r} count out of range")
    return ExpiryPolicy(kind, n)


def utc_now() -> datetime:
    return datetime.now(UTC)


def window_start(now: datetime, months: int) -> datetime:
    """The start of a rolling window of `months` ending at now (exclusive start)."""
    return add_months(now, -months)
