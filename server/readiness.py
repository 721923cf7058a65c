"""Dependency-aware health: a background probe of Redis and PostgreSQL that the gRPC health
service reports, so a load balancer stops sending calls this process cannot answer.

Every `interval_s`: Redis `PING` (on a cluster, CLUSTER INFO's cluster_state:ok on every
primary: common/redis_health.py) and PostgreSQL `SELECT 1`, each bounded by `timeout_s`.
While either fails, every Surge API service (loyalty.v1.*) is NOT_SERVING; when both answer
again, SERVING. The overall service "" is left alone: it says the process is alive (a
liveness check), which it is; restarting it would not bring Redis back. One WARNING per
transition, never one per probe; `surge_dependency_up{dependency}` has the last result.

The probe has its own Redis connection and its own PostgreSQL connection, not the serving
pools: a surge that keeps every pooled connection busy (or a pool waiting for a connection)
must not read as "PostgreSQL is down" and take every process out of the load balancer at
once. What it answers is "can this process reach the store", nothing about its load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Coroutine, Sequence
from typing import Any

import psycopg
from grpc_health.v1 import health, health_pb2
from redis.asyncio import Redis

from common.intervals import wait_or_stop
from common.metrics import Metrics
from common.redis_client import client, is_cluster_url
from common.redis_health import acheck
from common.redis_nodes import AnyRedis

log = logging.getLogger(__name__)

DEPENDENCIES = ("redis", "postgresql")
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class DependencyProbe:
    def __init__(
        self,
        *,
        redis_url: str,
        database_url: str,
        health_servicer: health.aio.HealthServicer,
        services: Sequence[str],
        metrics: Metrics,
        interval_s: float = 1.0,
        timeout_s: float = 1.0,
    ) -> None:
        # One connection of its own (per node on a cluster: CLUSTER INFO on every primary).
        self._redis: AnyRedis = (
            client(redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            if is_cluster_url(redis_url)
            else Redis.from_url(
                redis_url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                single_connection_client=True,
            )
        )
        self._database_url = database_url
        self._pg: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._health = health_servicer
        self._services = tuple(services)
        self._metrics = metrics
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        # None until the first probe: its result is logged only if something is down.
        self.up: dict[str, bool | None] = dict.fromkeys(DEPENDENCIES)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def serving(self) -> bool:
        return all(self.up.values())

    async def start(self) -> None:
        """Probes once (health reflects it before the first call), then every interval."""
        await self.probe_once()
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="dependency-probe")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self._redis.aclose()
        await self._close_pg()

    async def probe_once(self) -> None:
        was_serving, first = self.serving, None in self.up.values()
        errors = {
            "redis": await self._check(self._ping_redis()),
            "postgresql": await self._check(self._select_one()),
        }
        before = dict(self.up)
        for dependency, error in errors.items():
            self.up[dependency] = error is None
            self._metrics.dependency_up.labels(dependency).set(int(error is None))
        health_now = "SERVING" if self.serving else "NOT_SERVING"
        for dependency, error in errors.items():
            if error is not None and before[dependency] is not False:
                log.warning(
                    "%s unreachable (%s): health %s for the API services",
                    dependency,
                    error,
                    health_now,
                )
            elif error is None and before[dependency] is False:
                log.warning("%s reachable again: health %s", dependency, health_now)
        if first or self.serving != was_serving:
            status = _SERVING if self.serving else _NOT_SERVING
            for name in self._services:
                await self._health.set(name, status)

    async def _check(self, probe: Coroutine[Any, Any, None]) -> str | None:
        """None when the probe answered within the timeout, else what went wrong."""
        try:
            await asyncio.wait_for(probe, self._timeout_s)
        except TimeoutError:
            return f"no answer within {self._timeout_s:g}s"
        except Exception as e:  # any failure is "down": the message says which
            return _first_line(e)
        return None

    async def _ping_redis(self) -> None:
        await acheck(self._redis)

    async def _select_one(self) -> None:
        try:
            if self._pg is None or self._pg.closed:
                self._pg = await psycopg.AsyncConnection.connect(
                    self._database_url,
                    autocommit=True,
                    connect_timeout=max(1, math.ceil(self._timeout_s)),
                )
            await self._pg.execute("SELECT 1")
        except BaseException:
            await self._close_pg()  # a fresh connection next time
            raise

    async def _close_pg(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(Exception):
                await self._pg.close()
            self._pg = None

    async def _loop(self) -> None:
        while not await wait_or_stop(self._stopping, self._interval_s):
            try:
                await self.probe_once()
            except Exception:  # the probe must outlive anything; next one in a second
                log.exception("dependency probe failed")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
