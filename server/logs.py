"""Logging set-up, done once by the entry point (never at import time), and the start-up
line's redacted configuration summary.

JSON lines by default (python-json-logger, encoding with orjson): every record carries the
request id of the call it belongs to; access-log records also carry method, code, latency and
idempotency key. Both formats stamp each line with an RFC 3339 UTC time to the millisecond,
`Z`-suffixed (`2026-12-02T09:31:42.273Z`): one format to sort and join on, whatever the
host's zone.

The access log writes a line per call, so its cost is the edge's: the stdlib json encoder,
the caller lookup (a stack walk for a source line no format here prints) and a datetime per
line were half of the edge's own Python time (py-spy and cProfile, docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pythonjsonlogger.orjson import OrjsonFormatter

from server.config import Settings
from server.interceptors import RequestIdFilter

MASK = "***"
# Query parameters of a libpq or redis URL that hold a secret, and their values.
_SECRET_PARAM = re.compile(r"(^|&)(password|sslpassword)=[^&]*", re.IGNORECASE)


_second: list[tuple[int, str]] = [(-1, "")]  # the last whole second formatted, and its text


def rfc3339(created: float) -> str:
    """'2026-12-02T09:31:42.273Z' for a record's `created` (seconds since the epoch).
    The seconds part is formatted once per second: lines of one second share it."""
    fraction, seconds = math.modf(created)  # rounded as datetime.fromtimestamp rounds
    whole, micros = int(seconds), round(fraction * 1_000_000)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    last, text = _second[0]
    if whole != last:
        text = f"{datetime.fromtimestamp(whole, UTC):%Y-%m-%dT%H:%M:%S}"
        _second[0] = (whole, text)
    return f"{text}.{micros // 1000:03d}Z"


class _Rfc3339:
    """Formatter mixin: `asctime` is rfc3339(record.created), whatever datefmt says."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return rfc3339(record.created)


class TextFormatter(_Rfc3339, logging.Formatter):
    pass


class JsonLineFormatter(_Rfc3339, OrjsonFormatter):
    pass


def setup_logging(level: str, *, json_lines: bool) -> None:
    # No format here prints a record's source file, line, thread or process: skip finding
    # them (the logging docs' own advice for code that logs on a hot path).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if json_lines:
        handler.setFormatter(
            JsonLineFormatter(
                "{asctime}{levelname}{name}{request_id}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            TextFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def redact_url(url: str) -> str:
    """The URL with its password (user info, or a password query parameter) masked:
    'postgresql://surge:***@db:5432/surge', 'redis://:***@cache:6379/0'. Nothing else in it
    changes."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:{MASK}@{netloc.rpartition('@')[2]}"
    query = _SECRET_PARAM.sub(rf"\1\2={MASK}", parts.query)
    redacted = f"{parts.scheme}://{netloc}{parts.path}"
    if query:
        redacted += f"?{query}"
    if parts.fragment:
        redacted += f"#{parts.fragment}"
    return redacted


def config_summary(settings: Settings, *, database_url: str, redis_url: str) -> dict[str, Any]:
    """Every setting, for the start-up line, with nothing secret in it: the JWT secret is
    only `set` or `unset`, the stores' URLs have their passwords masked, file paths are
    shown (never their content)."""
    summary: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name == "jwt_secret":
            summary[f.name] = "set" if value is not None else "unset"
        elif f.name == "database_url":
            summary[f.name] = redact_url(database_url)
        elif f.name == "redis_url":
            summary[f.name] = redact_url(redis_url)
        elif f.name == "program":
            summary[f.name] = {
                p.name: _plain(getattr(value, p.name)) for p in dataclasses.fields(value)
            }
        else:
            summary[f.name] = _plain(value)
    return summary


def _plain(value: Any) -> Any:
    """A JSON-friendly value: numbers, strings and booleans as they are; tuples of named
    things as their names; anything else as its str()."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [getattr(v, "name", str(v)) for v in value]
    return str(value)
