"""The pause between two passes of a background loop (sweeper, ledger jobs, leadership,
dependency probe): one interval, cut short when the loop is asked to stop."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
    """Waits `seconds`, or less if `stopping` is set meanwhile; True once it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()
