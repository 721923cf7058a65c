"""Start-up's wait for the stores: every command that needs Redis and PostgreSQL first waits
until both answer, retrying with backoff for SURGE_STARTUP_TIMEOUT_SECONDS (a database that
boots after the service, a DNS name not yet published, a password being rotated), one log
line per attempt; then gives up with one line (exit code 1 in server/cli.py).

What each attempt does is what the service does first: connect, `SELECT 1`, `PING` (with
the URL's credentials, so a wrong password is found here and not at the first call).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
import redis
import redis.exceptions

from common.redis_client import sync_client
from common.redis_health import RedisUnhealthy, check

if TYPE_CHECKING:
    from server.app import Stores

log = logging.getLogger(__name__)

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 5.0
ATTEMPT_TIMEOUT_S = 5.0


class StartupError(RuntimeError):
    """A store did not answer within the start-up timeout; the message is one line."""


def wait_for_stores(
    stores: Stores,
    timeout_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    started = time.monotonic()
    delay = FIRST_DELAY_S
    attempt = 0
    while True:
        attempt += 1
        left = timeout_s - (time.monotonic() - started)
        attempt_timeout = max(1.0, min(ATTEMPT_TIMEOUT_S, left))
        failure = _probe(stores, attempt_timeout)
        if failure is None:
            if attempt > 1:
                log.info("Redis and PostgreSQL answer (attempt %d)", attempt)
            return
        dependency, reason = failure
        elapsed = time.monotonic() - started
        left = timeout_s - elapsed
        if left <= 0:
            raise StartupError(
                f"{dependency} unreachable after {elapsed:.0f}s and {attempt} attempt(s) "
                f"(SURGE_STARTUP_TIMEOUT_SECONDS={timeout_s:g}): {reason}"
            )
        wait = min(delay, left)
        log.warning(
            "waiting for %s (attempt %d, %.1fs of %gs): %s; next attempt in %.1fs",
            dependency,
            attempt,
            elapsed,
            timeout_s,
            reason,
            wait,
        )
        sleep(wait)
        delay = min(delay * 2, MAX_DELAY_S)


def _probe(stores: Stores, timeout_s: float) -> tuple[str, str] | None:
    """(dependency, reason) of the first store that does not answer, or None."""
    try:
        # libpq rounds connect_timeout up to 2 s at least.
        with psycopg.connect(stores.database_url, connect_timeout=max(2, int(timeout_s))) as c:
            c.execute("SELECT 1")
    except psycopg.Error as e:
        return "postgresql", _one_line(e)
    # On a cluster (redis+cluster://): every primary answers with cluster_state:ok; on any
    # Redis, every primary accepts SCRIPT LOAD. The reason names the node.
    try:
        client = sync_client(
            stores.redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
    except (redis.RedisError, redis.exceptions.RedisClusterException) as e:
        return "redis", _one_line(e)
    try:
        check(client, script_load=True)
    except RedisUnhealthy as e:
        return "redis", _one_line(e)
    finally:
        client.close()
    return None


def _one_line(e: BaseException) -> str:
    """The driver's message, first line only (psycopg's run on with hints and context)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__
