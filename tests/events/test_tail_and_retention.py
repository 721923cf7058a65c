"""`surge events tail`, the pruning job's watermark, and SURGE_EVENTS_RETENTION."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

import psycopg
import pytest

import events
from common.env import ConfigError
from events import retention
from server import cli_events
from server.app import Stores
from server.config import Settings


async def _write(url: str, n: int) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        sequences = [
            await events.append(
                conn,
                events.EventType.STOCK_ADJUSTED if i % 2 else events.EventType.POINTS_EARNED,
                "item",
                f"i{i}",
                {"i": i},
                actor="ops:alice" if i == 0 else None,
            )
            for i in range(n)
        ]
        await conn.commit()
    return sequences


async def test_tail_prints_json_lines_after_a_sequence_and_of_the_types_asked(
    clean: Stores, capsys: pytest.CaptureFixture[str]
) -> None:
    sequences = await _write(clean.database_url, 4)
    args = argparse.Namespace(after=sequences[0], types=["stock.adjusted"], no_follow=True)
    assert await cli_events.run(args, clean.database_url) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["sequence"], x["type"], x["payload"]) for x in lines] == [
        (sequences[1], "stock.adjusted", {"i": 1}),
        (sequences[3], "stock.adjusted", {"i": 3}),
    ]
    assert set(lines[0]) == {
        "sequence",
        "type",
        "subject_kind",
        "subject_id",
        "actor",
        "occurred_at",
        "payload",
    }


async def test_tail_exits_2_on_an_unknown_type_or_a_pruned_sequence(
    clean: Stores, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = argparse.Namespace(after=0, types=["points.stolen"], no_follow=True)
    assert await cli_events.run(bad, clean.database_url) == 2
    assert "types" in capsys.readouterr().err
    sequences = await _write(clean.database_url, 2)
    async with await psycopg.AsyncConnection.connect(clean.database_url, autocommit=True) as c:
        await c.execute("UPDATE events SET occurred_at = now() - interval '2 days'")
        assert await retention.prune(c, timedelta(days=1)) == 2
        cur = await c.execute("SELECT through FROM events_pruned")
        assert await cur.fetchone() == (sequences[1],)
    pruned = argparse.Namespace(after=0, types=[], no_follow=True)
    assert await cli_events.run(pruned, clean.database_url) == 2
    assert f"oldest event kept is {sequences[1] + 1}" in capsys.readouterr().err


async def test_pruning_keeps_what_is_within_retention_and_works_in_chunks(
    clean: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    sequences = await _write(clean.database_url, 7)
    monkeypatch.setattr(retention, "CHUNK", 2)
    async with await psycopg.AsyncConnection.connect(clean.database_url, autocommit=True) as c:
        await c.execute(
            "UPDATE events SET occurred_at = now() - interval '8 days' WHERE sequence <= %s",
            (sequences[4],),
        )
        assert await retention.prune(c, timedelta(days=7)) == 5
        cur = await c.execute("SELECT sequence FROM events ORDER BY sequence")
        assert [r[0] for r in await cur.fetchall()] == sequences[5:]
        cur = await c.execute("SELECT through FROM events_pruned")
        assert await cur.fetchone() == (sequences[4],)


@pytest.mark.parametrize(
    ("raw", "seconds"), [(None, 7 * 86_400), ("12h", 43_200), ("30m", 1800), ("3600", 3600)]
)
def test_retention_setting(raw: str | None, seconds: int) -> None:
    env = {} if raw is None else {"SURGE_EVENTS_RETENTION": raw}
    assert Settings.load(env).events_retention_seconds == seconds


@pytest.mark.parametrize("raw", ["7 days", "-1d", "10s", "11000d"])
def test_a_bad_retention_stops_the_start(raw: str) -> None:
    with pytest.raises(ConfigError, match="SURGE_EVENTS_RETENTION"):
        Settings.load({"SURGE_EVENTS_RETENTION": raw})
