"""Token buckets: a burst, then the rate; the wait until the next token; bounded memory."""

from __future__ import annotations

import pytest

from common.ratelimit import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(2.0, 3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token every 0.5 s
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0  # another key has its own bucket


def test_a_refused_call_takes_nothing_and_the_bucket_refills_to_its_burst() -> None:
    clock = Clock()
    buckets = TokenBuckets(1.0, 2, clock=clock)
    buckets.take("a"), buckets.take("a")
    assert buckets.take("a") == pytest.approx(1.0)
    assert buckets.take("a") == pytest.approx(1.0)  # refusals do not dig deeper
    clock.now += 3600
    assert [buckets.take("a") for _ in range(3)][:2] == [0.0, 0.0]  # never beyond the burst


def test_memory_is_bounded_by_forgetting_the_least_recent_key() -> None:
    clock = Clock()
    buckets = TokenBuckets(1.0, 1, max_keys=2, clock=clock)
    buckets.take("a"), buckets.take("b")
    buckets.take("a")  # "a" is now the most recent, refused
    buckets.take("c")  # forgets "b"
    assert len(buckets) == 2
    assert buckets.take("b") == 0.0  # forgotten: a full bucket again
    assert buckets.take("c") > 0  # remembered


def test_a_bucket_needs_a_rate_and_a_burst() -> None:
    with pytest.raises(ValueError):
        TokenBuckets(0, 1)
    with pytest.raises(ValueError):
        TokenBuckets(1, 0)
