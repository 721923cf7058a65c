"""A dependency outage is said once by the sweeper, not once per pass with a traceback
(a Redis Cluster failover failed every pass, five a second, each with a traceback), and its
end is said too. A bug still gets its traceback every time."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.exceptions

from tests.conftest import Running


async def _passes(
    server: Running, monkeypatch: pytest.MonkeyPatch, errors: list[Exception]
) -> None:
    sweeper = server.app.sweeper
    await sweeper.stop()
    real = sweeper.refresh_gauges
    left = list(errors)
    done = asyncio.Event()

    async def failing() -> None:
        if left:
            raise left.pop(0)
        done.set()
        await real()

    monkeypatch.setattr(sweeper, "refresh_gauges", failing)
    sweeper.start()
    await asyncio.wait_for(done.wait(), timeout=10)
    await sweeper.stop()


async def test_an_outage_is_one_warning_and_its_end_one_line(
    server: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flashsale.sweeper")
    down: list[Exception] = [redis.exceptions.ConnectionError("Error 111") for _ in range(4)]
    await _passes(server, monkeypatch, down)

    lines = [(r.levelno, r.getMessage(), r.exc_info) for r in caplog.records]
    warnings = [m for level, m, _ in lines if level == logging.WARNING]
    assert warnings == [
        "sweep failed: redis unreachable (ConnectionError); retrying every 0.2s until it answers"
    ]
    assert any(m == "sweep: passes succeed again" for _, m, _ in lines)
    assert not any(exc for _, _, exc in lines)


async def test_a_bug_keeps_its_traceback_every_pass(
    server: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flashsale.sweeper")
    await _passes(server, monkeypatch, [KeyError("bug"), KeyError("bug")])

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all(r.exc_info for r in errors)
    assert not any("succeed again" in r.getMessage() for r in caplog.records)
