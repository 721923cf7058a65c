"""server/logs.py: the time stamp of both formats, the start-up line's redacted settings, and
health checks at DEBUG in the access log."""

from __future__ import annotations

import json
import logging
import random
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from grpc_health.v1.health_pb2 import HealthCheckRequest
from grpc_health.v1.health_pb2_grpc import HealthStub

from server.logs import config_summary, redact_url, rfc3339
from tests.auth import TEST_SECRET
from tests.conftest import TEST_SETTINGS, Running, StartServer

RFC3339_MS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

# A child process, so the format is what a real start-up's setup_logging writes, with a
# time zone far from UTC to show it does not leak in.
_EMIT = """
import logging, sys
from server.logs import setup_logging
setup_logging("INFO", json_lines=sys.argv[1] == "json")
logging.getLogger("surge.test").info("hello")
"""


def _emitted(fmt: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _EMIT, fmt],
        capture_output=True,
        text=True,
        timeout=60,
        env={"TZ": "Asia/Kolkata", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return done.stderr.strip()


def test_rfc3339_is_utc_with_milliseconds_and_z() -> None:
    assert rfc3339(1796203902.2739) == "2026-12-02T09:31:42.273Z"
    assert rfc3339(1796203902.0) == "2026-12-02T09:31:42.000Z"
    assert rfc3339(1796203902.9999) == "2026-12-02T09:31:42.999Z"  # truncated, not rounded


def test_rfc3339_reads_as_datetime_does_across_seconds() -> None:
    # The seconds part is cached per whole second; the milliseconds must still be those
    # datetime rounds to, at every boundary (x.9999996 rounds into the next second).
    rng = random.Random(7)
    moments = [1796203902 + i / 1000 + d for i in range(-2000, 2000) for d in (0, 4e-7, 6e-7)]
    moments += [rng.uniform(0, 4e9) for _ in range(20_000)]
    for moment in moments:
        as_datetime = datetime.fromtimestamp(moment, UTC)
        expected = f"{as_datetime:%Y-%m-%dT%H:%M:%S}.{as_datetime.microsecond // 1000:03d}Z"
        assert rfc3339(moment) == expected, moment


def test_json_lines_carry_an_rfc3339_time() -> None:
    line = json.loads(_emitted("json"))

    assert RFC3339_MS_Z.fullmatch(line["time"]), line
    assert (line["level"], line["logger"], line["message"]) == ("INFO", "surge.test", "hello")


def test_text_lines_start_with_an_rfc3339_time() -> None:
    line = _emitted("text")

    stamp, rest = line.split(" ", 1)
    assert RFC3339_MS_Z.fullmatch(stamp), line
    assert rest == "INFO surge.test [-] hello"


def test_urls_lose_their_passwords() -> None:
    assert redact_url("postgresql://surge:s3cret@db:5432/surge") == (
        "postgresql://surge:***@db:5432/surge"
    )
    assert redact_url("redis://:hunter2hunter2@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("rediss://default:p%40ss@cache:6380/1?ssl_cert_reqs=required") == (
        "rediss://default:***@cache:6380/1?ssl_cert_reqs=required"
    )
    assert redact_url("postgresql:///surge?host=/run/pg&password=topsecret&user=surge") == (
        "postgresql:///surge?host=/run/pg&password=***&user=surge"
    )
    assert redact_url("postgresql://surge@127.0.0.1:15432/surge") == (
        "postgresql://surge@127.0.0.1:15432/surge"
    )


def test_the_settings_summary_holds_no_secret() -> None:
    settings = replace(TEST_SETTINGS, jwt_secret=b"x" * 40)
    summary = config_summary(
        settings,
        database_url="postgresql://surge:pg-secret-1@db/surge",
        redis_url="redis://:redis-secret-2@cache:6379/0",
    )
    text = json.dumps(summary)

    assert summary["jwt_secret"] == "set"
    assert summary["database_url"] == "postgresql://surge:***@db/surge"
    assert summary["redis_url"] == "redis://:***@cache:6379/0"
    assert summary["hold_ttl_seconds"] == settings.hold_ttl_seconds
    assert summary["program"]["currency"] == settings.program.currency
    for secret in ("pg-secret-1", "redis-secret-2", "x" * 40, TEST_SECRET.decode()):
        assert secret not in text


async def test_one_start_up_line_with_the_version_and_redacted_settings(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.app")

    await start_server()

    [line] = [r for r in caplog.records if "starting" in r.getMessage()]
    assert line.levelno == logging.INFO
    assert line.version  # type: ignore[attr-defined]
    assert line.settings["jwt_secret"] == "set"  # type: ignore[attr-defined]
    assert TEST_SECRET.decode() not in line.getMessage()
    assert f"surge {line.version} starting" in line.getMessage()  # type: ignore[attr-defined]


async def test_health_checks_are_logged_at_debug_other_calls_at_info(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="surge.access")

    await HealthStub(server.channel).Check(HealthCheckRequest())
    await server.api.member()

    levels = {r.method: r.levelno for r in caplog.records if r.name == "surge.access"}  # type: ignore[attr-defined]
    assert levels == {
        "/grpc.health.v1.Health/Check": logging.DEBUG,
        "/loyalty.v1.MemberService/CreateMember": logging.INFO,
    }
