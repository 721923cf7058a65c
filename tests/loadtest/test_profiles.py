"""The surge shapes: stages in order, and a CI profile that fits CI's time."""

from __future__ import annotations

import pytest

from loadtest.profiles import CI, PROFILES, get


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_stages_run_in_order_from_browse_through_the_gate_to_the_tail(name: str) -> None:
    p = get(name)
    names = [s.name for s in p.stages]
    assert names == ["browse", "gate", "spike", "plateau", "tail"]
    ends = [s.until_s for s in p.stages]
    assert ends == sorted(ends) and ends[1] == 0  # the gate closes at the opening
    assert p.stages[1].users == max(s.users for s in p.stages)  # everyone is at the gate
    assert p.gate_s == -p.stages[0].until_s
    assert 0 < p.chaos_kill_at_s < p.sale_s
    assert sum(c.weight for c in p.campaigns) == 100
    assert min(c.units for c in p.campaigns) <= 200  # one hot item far below demand
    assert any(c.cash_price_cents for c in p.campaigns)
    assert p.poor_points < min(c.points_price for c in p.campaigns) <= p.rich_points


def test_tick_follows_the_stages_and_stops_after_the_tail() -> None:
    assert CI.tick(-100) == (CI.stages[0].users, CI.stages[0].spawn_rate)
    assert CI.tick(-1) == (CI.stages[1].users, CI.stages[1].spawn_rate)
    assert CI.tick(0) == (CI.stages[2].users, CI.stages[2].spawn_rate)
    assert CI.tick(CI.sale_s - 0.1) == (CI.stages[-1].users, CI.stages[-1].spawn_rate)
    assert CI.tick(CI.sale_s) is None
    assert CI.stage_at(1) == "spike" and CI.stage_at(CI.sale_s) == "over"


def test_the_ci_profile_leaves_room_in_ci_for_the_chaos_run_too() -> None:
    assert CI.browse_s + CI.sale_s <= 60
