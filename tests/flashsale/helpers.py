"""Shared steps for redemption tests: run calls concurrently, sort outcomes, audit."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Iterable
from typing import Any

import grpc

from flashsale.audit import AuditReport, audit
from tests.conftest import Running
from tests.factories import failure


async def outcomes(calls: Iterable[Awaitable[Any]]) -> tuple[list[Any], Counter[str]]:
    """Runs calls at once; returns the successful responses and a count of refusal reasons."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    ok, refused = [], Counter[str]()
    for result in results:
        if isinstance(result, grpc.aio.AioRpcError):
            refused[failure(result).reason or result.code().name] += 1
        elif isinstance(result, BaseException):
            raise result
        else:
            ok.append(result)
    return ok, refused


async def settled_audit(running: Running) -> AuditReport:
    """Waits for one sweep to pass, then audits with traffic stopped."""
    await running.app.sweeper.sweep_once()
    settings = running.app.settings
    stuck = int((settings.sweep_interval_seconds + settings.commit_fence_seconds) * 1000)
    return await audit(running.app.pool, running.app.redis, settled=True, stuck_after_ms=stuck)
