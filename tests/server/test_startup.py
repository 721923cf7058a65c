"""Safe start-up, through the `surge` command in a subprocess with a controlled environment:
a bad setting is one line and exit code 2, stores that do not answer are retried until
SURGE_STARTUP_TIMEOUT_SECONDS then exit code 1, commands other than `serve` never start an
embedded stack, and a stack never takes another data dir's stores. Never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from server.app import Stores
from server.embedded import ForeignStack, LocalStack


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def surge(*argv: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`surge ARGV` with only `env` (and PATH, HOME) for its settings."""
    base = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *argv],
        env={**base, "SURGE_LOG_FORMAT": "text", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_version_is_the_package_version() -> None:
    from importlib.metadata import version

    result = surge("--version", env={})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"surge {version('surge')}"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATABASE_URL": "db.example.com:5432/surge"}, "DATABASE_URL must be a URL starting"),
        ({"DATABASE_URL": "mysql://u:secret@db/surge"}, "DATABASE_URL must start with post"),
        ({"DATABASE_URL": "postgresql://u:secret@db:five/surge"}, "DATABASE_URL has a port"),
        ({"REDIS_URL": "cache:6379"}, "REDIS_URL must be a URL starting with redis://"),
        ({"REDIS_URL": "http://cache:6379/0"}, "REDIS_URL must start with redis://"),
        ({"REDIS_URL": "redis://cache:port/0"}, "REDIS_URL has a port that is not a number"),
        ({"SURGE_DRAIN_SECONDS": "-1"}, "SURGE_DRAIN_SECONDS must be between 0 and"),
        ({"SURGE_STARTUP_TIMEOUT_SECONDS": "soon"}, "SURGE_STARTUP_TIMEOUT_SECONDS must be a"),
        ({"SURGE_HOLD_TTL_SECONDS": "2"}, "SURGE_COMMIT_FENCE_SECONDS must be below"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_code_2(env: dict[str, str], expected: str) -> None:
    result = surge("migrate", env=env)
    assert result.returncode == 2, result.stderr
    line = _one_line(result)
    assert line.startswith(f"configuration error: {expected}"), line
    assert "secret" not in line  # a URL's password is never repeated


def _refused_port() -> str:
    return str(_free_port())


@pytest.mark.parametrize(
    ("urls", "dependency"),
    [
        ({"DATABASE_URL": "postgresql://surge@127.0.0.1:{free}/surge"}, "postgresql"),
        ({"DATABASE_URL": "postgresql://surge@no-such-host.invalid:5432/surge"}, "postgresql"),
        ({"REDIS_URL": "redis://127.0.0.1:{free}/0"}, "redis"),
        ({"REDIS_URL": "redis://nobody:wrong-password@{redis_host}/0"}, "redis"),
    ],
    ids=["refused", "unknown-host", "redis-refused", "redis-bad-password"],
)
def test_unreachable_stores_are_retried_then_exit_code_1(
    stores: Stores, urls: dict[str, str], dependency: str
) -> None:
    fill = {"free": _refused_port(), "redis_host": urlsplit(stores.redis_url).netloc}
    env = {
        "DATABASE_URL": stores.database_url,
        "REDIS_URL": stores.redis_url,
        **{k: v.format(**fill) for k, v in urls.items()},
        "SURGE_STARTUP_TIMEOUT_SECONDS": "1.5",
    }
    started = time.monotonic()
    result = surge("migrate", env=env)
    took = time.monotonic() - started

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    *attempts, last = result.stderr.strip().splitlines()
    assert last.startswith(f"surge migrate: {dependency} unreachable after"), last
    assert "SURGE_STARTUP_TIMEOUT_SECONDS=1.5" in last and "wrong-password" not in last
    assert len(attempts) >= 2, result.stderr  # retried, a line per attempt
    assert all(f"waiting for {dependency} (attempt" in a for a in attempts), attempts
    assert took < 15, took


def test_a_command_without_urls_or_a_running_stack_refuses(tmp_path: Path) -> None:
    env = {
        "SURGE_DATA_DIR": str(tmp_path / "data"),
        "SURGE_EMBEDDED_REDIS_PORT": str(_free_port()),
        "SURGE_EMBEDDED_POSTGRES_PORT": str(_free_port()),
    }
    for command in (["audit"], ["migrate"], ["rebuild-cache"], ["expire-points"]):
        result = surge(*command, env=env)
        assert result.returncode == 2, result.stderr
        line = _one_line(result)
        assert line.startswith(f"surge {command[0]}: set REDIS_URL and DATABASE_URL, or start")
        assert "surge stack start" in line
    assert not (tmp_path / "data" / "redis").exists()  # nothing was started
    assert not (tmp_path / "data" / "postgres").exists()


def _session_stack(stores: Stores) -> LocalStack:
    """The test session's own embedded stack (tests/conftest.py), found from its Redis."""
    if os.environ.get("TEST_REDIS_URL"):
        pytest.skip("the stores are not an embedded stack (TEST_REDIS_URL)")
    redis_port = urlsplit(stores.redis_url).port
    postgres_port = urlsplit(stores.database_url).port
    assert redis_port and postgres_port
    found = redis.Redis(port=redis_port, decode_responses=True).config_get("dir")
    return LocalStack(Path(str(found["dir"])).parent, redis_port, postgres_port)


def test_a_command_attaches_to_the_running_stack_of_its_data_dir(stores: Stores) -> None:
    stack = _session_stack(stores)
    result = surge(
        "migrate",
        env={
            "SURGE_DATA_DIR": str(stack.data_dir),
            "SURGE_EMBEDDED_REDIS_PORT": str(stack.redis_port),
            "SURGE_EMBEDDED_POSTGRES_PORT": str(stack.postgres_port),
        },
    )
    assert result.returncode == 0, result.stderr
    assert "migrations applied: none, all recorded" in result.stdout


def test_the_stack_refuses_the_stores_of_another_data_dir(stores: Stores, tmp_path: Path) -> None:
    session = _session_stack(stores)
    env = {
        "SURGE_DATA_DIR": str(tmp_path / "mine"),
        "SURGE_EMBEDDED_REDIS_PORT": str(session.redis_port),
        "SURGE_EMBEDDED_POSTGRES_PORT": str(_free_port()),
    }
    for argv in (["stack", "start"], ["stack", "stop"], ["audit"], ["serve"]):
        result = surge(*argv, env=env)
        assert result.returncode == 2, (argv, result.stderr)
        line = _one_line(result)
        assert line.startswith(
            f"embedded stack: port {session.redis_port} has the Redis of the data dir "
            f"{session.data_dir}, not of SURGE_DATA_DIR={tmp_path / 'mine'}"
        ), line
    assert session.running()  # left alone: not stopped by the foreign `stack stop`

    # PostgreSQL too (checked before anything is started for it).
    mine = LocalStack(tmp_path / "mine", _free_port(), session.postgres_port)
    with pytest.raises(
        ForeignStack, match=f"has the PostgreSQL of the data dir {session.data_dir}"
    ):
        mine.start()
    assert not (tmp_path / "mine" / "postgres").exists()


def test_stack_stop_says_when_nothing_was_running(tmp_path: Path) -> None:
    result = surge(
        "stack",
        "stop",
        env={
            "SURGE_DATA_DIR": str(tmp_path),
            "SURGE_EMBEDDED_REDIS_PORT": str(_free_port()),
            "SURGE_EMBEDDED_POSTGRES_PORT": str(_free_port()),
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"nothing was running for {tmp_path.resolve()}"
