"""flashsale/pricing.py as pure functions: which rule is in force, rounding, how long a
price lasts, and the tier cache's bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flashsale.pricing import PriceRule, TierCache, price_now

T0 = datetime(2026, 12, 31, 12, tzinfo=UTC)
END = T0 + timedelta(hours=10)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_percent_rounds_up_to_a_whole_point() -> None:
    sale = PriceRule("sale", at(0), at(1), percent=33)
    price = price_now([sale], list_price=10, tier=None, now=at(0.5), campaign_ends_at=END)
    assert (price.unit, price.list_unit, price.rule) == (4, 10, sale)  # 3.3 -> 4
    assert price.total(3) == 12 and price.list_total(3) == 30


def test_a_tier_rule_wins_only_for_its_tier() -> None:
    everybody = PriceRule("all", at(0), at(5), percent=90)
    gold = PriceRule("gold", at(1), at(2), points_price=5, tier="gold")
    rules = [everybody, gold]

    def unit(tier: str | None, hours: float) -> int:
        return price_now(rules, list_price=100, tier=tier, now=at(hours), campaign_ends_at=END).unit

    assert [unit("gold", h) for h in (0.5, 1.5, 2.5)] == [90, 5, 90]
    assert [unit("base", h) for h in (0.5, 1.5, 2.5)] == [90, 90, 90]
    assert unit(None, 6) == 100  # no rule in force: the list price


def test_a_price_lasts_until_the_next_change_that_applies() -> None:
    everybody = PriceRule("all", at(0), at(5), percent=90)
    gold = PriceRule("gold", at(1), at(2), points_price=5, tier="gold")
    later = PriceRule("later", at(6), at(7), percent=50)

    def until(tier: str, hours: float) -> datetime:
        rules = [everybody, gold, later]
        return price_now(
            rules, list_price=100, tier=tier, now=at(hours), campaign_ends_at=END
        ).valid_until

    assert until("gold", 0.5) == at(1)  # the gold rule starts
    assert until("base", 0.5) == at(5)  # the gold rule does not apply
    assert until("gold", 1.5) == at(2)
    assert until("base", 5.5) == at(6)
    assert until("base", 8) == END


async def test_the_tier_cache_reads_once_and_stays_bounded() -> None:
    reads: list[str] = []

    async def read(member_id: str) -> str:
        reads.append(member_id)
        return "gold"

    cache = TierCache(read, ttl_s=60, size=2)
    for member in ("a", "a", "b", "c", "a"):
        assert await cache.tier_of(member) == "gold"
    # "a" was read, cached, dropped when "c" came (size 2), and read again.
    assert reads == ["a", "b", "c", "a"]
