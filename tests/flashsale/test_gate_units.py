"""Pure arithmetic of the gate's read side."""

from __future__ import annotations

from flashsale.gate import _not_yet_committed


def test_units_committed_but_not_yet_settled_are_not_counted_twice() -> None:
    # Redis: 3 held, mirror says 10 taken; PostgreSQL already has 12: two holds are committed.
    assert _not_yet_committed(held=3, redis_taken=10, pg_taken=12) == 1
    assert _not_yet_committed(held=3, redis_taken=12, pg_taken=12) == 3
    assert _not_yet_committed(held=0, redis_taken=5, pg_taken=9) == 0
    # A mirror ahead of what we read (a later commit settled in between) never adds units.
    assert _not_yet_committed(held=2, redis_taken=13, pg_taken=12) == 2
