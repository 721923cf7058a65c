"""Program settings: parsing, defaults, expiry dates on their edges, rounding."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from points.program import ExpiryPolicy, Program, ProgramError, TaskRule, Tier, add_months
from server.config import ConfigError, Settings


def test_loads_every_setting() -> None:
    p = Program.load(
        {
            "SURGE_CURRENCY": "EUR",
            "SURGE_EARN_RATE": "0.5",
            "SURGE_TIERS": "basic:0:1,vip:100:3",
            "SURGE_TIER_WINDOW_MONTHS": "6",
            "SURGE_TIER_KEEP_MONTHS": "24",
            "SURGE_POINTS_EXPIRY": "year-end:1",
            "SURGE_EXPIRING_SOON_DAYS": "7",
            "SURGE_REDEMPTION_THRESHOLD": "10000",
            "SURGE_MAX_BENEFICIARIES": "3",
            "SURGE_TASK_RULES": "register:50:1,share:10:",
            "SURGE_LEDGER_JOB_INTERVAL_SECONDS": "5",
            "SURGE_TIER_EVALUATION_INTERVAL_SECONDS": "3600",
        }
    )
    assert (p.currency, p.earn_rate) == ("EUR", Decimal("0.5"))
    assert p.tiers == (Tier("basic", 0, Decimal(1)), Tier("vip", 100, Decimal(3)))
    assert (p.tier_window_months, p.tier_keep_months) == (6, 24)
    assert p.expiry == ExpiryPolicy("year-end", 1)
    assert (p.expiring_soon_days, p.redemption_threshold, p.max_beneficiaries) == (7, 10_000, 3)
    assert p.task_rules == (TaskRule("register", 50, 1), TaskRule("share", 10, None))
    assert (p.job_interval_seconds, p.tier_evaluation_interval_seconds) == (5.0, 3600.0)
    assert Program.load({}) == Program()
    assert Program().currency == "CNY"
    assert Program.load({"SURGE_TASK_RULES": ""}).task_rules == ()
    assert Settings.load({}).program == Program()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SURGE_CURRENCY", "eur"),
        ("SURGE_CURRENCY", "EURO"),
        ("SURGE_CURRENCY", "€"),
        ("SURGE_EARN_RATE", "-1"),
        ("SURGE_EARN_RATE", "abc"),
        ("SURGE_TIERS", "base:10:1"),
        ("SURGE_TIERS", "base:0:1,gold:10:2,silver:5:1.5"),
        ("SURGE_TIERS", "base:0:1,base:10:2"),
        ("SURGE_TIERS", "base:0"),
        ("SURGE_TIERS", "base:0:0"),
        ("SURGE_POINTS_EXPIRY", "weeks:3"),
        ("SURGE_POINTS_EXPIRY", "months:0"),
        ("SURGE_POINTS_EXPIRY", "months:x"),
        ("SURGE_TASK_RULES", "share"),
        ("SURGE_TASK_RULES", "share:0:"),
        ("SURGE_TASK_RULES", "share:1:1,share:2:"),
        ("SURGE_REDEMPTION_THRESHOLD", "-5"),
        ("SURGE_MAX_BENEFICIARIES", "lots"),
        ("SURGE_LEDGER_JOB_INTERVAL_SECONDS", "0"),
    ],
)
def test_bad_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(ProgramError):
        Program.load({name: value})
    with pytest.raises(ConfigError):
        Settings.load({name: value})


def test_expiry_dates_on_their_edges() -> None:
    at = datetime(2024, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert ExpiryPolicy("months", 1).expires_at(at) == datetime(
        2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC
    )
    assert ExpiryPolicy("months", 12).expires_at(at) == datetime(
        2025, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC
    )
    new_year = datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert ExpiryPolicy("year-end", 1).expires_at(new_year) == datetime(2026, 1, 1, tzinfo=UTC)
    assert ExpiryPolicy("year-end", 0).expires_at(new_year) == datetime(2025, 1, 1, tzinfo=UTC)
    assert ExpiryPolicy("never").expires_at(new_year) is None
    assert add_months(datetime(2024, 3, 31, tzinfo=UTC), -1) == datetime(2024, 2, 29, tzinfo=UTC)


def test_purchase_points_round_down() -> None:
    p = Program(earn_rate=Decimal("1"))
    assert p.points_for_purchase(99, Decimal(1)) == 0
    assert p.points_for_purchase(100, Decimal(1)) == 1
    assert p.points_for_purchase(199, Decimal("1.5")) == 2  # 2.985
    assert p.points_for_purchase(12_345, Decimal(2)) == 246  # 246.9
    assert Program(earn_rate=Decimal("0.1")).points_for_purchase(999, Decimal(1)) == 0
