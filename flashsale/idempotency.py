"""Exactly once, as Stripe defines it: a redemption is named by (member_id, idempotency_key).

- The request's fingerprint is saved with its outcome (in Redis's record, then in the
  redemption row); the same key with another fingerprint is IDEMPOTENCY_KEY_REUSED.
- Within one process, a second call with a key whose first call is still running waits for
  the first's outcome instead of racing it (InFlight).
- PostgreSQL's UNIQUE (member_id, idempotency_key) is the last word: a key Redis saw done is
  replayed from the row (replay_saved).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Generic, TypeVar

from psycopg_pool import AsyncConnectionPool

from common.errors import IdempotencyKeyReused, RequestInProgress
from flashsale import store
from flashsale.model import Address, Redeemed

Outcome = TypeVar("Outcome")


def fingerprint(member_id: str, campaign_id: str, quantity: int, address: Address | None) -> str:
    """The request's identity for idempotency: stored with the redemption, so its bytes
    must never change."""
    if address is None:
        # The same bytes json.dumps gives (canonical UUIDs need no escaping), at a tenth of
        # the cost: this runs for every Redeem.
        body = f'["{member_id}", "{campaign_id}", {quantity}, null]'
    else:
        body = json.dumps([member_id, campaign_id, quantity, asdict(address)], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


class InFlight(Generic[Outcome]):
    """One key, one outcome in this process: calls with a key whose first call is running
    share that call's answer (as a replay: `as_replay`), or are refused if their request
    differs. Redeem's outcome is a Redeemed, a lottery draw's a Drawn."""

    def __init__(self, as_replay: Callable[[Outcome], Outcome]) -> None:
        self._as_replay = as_replay
        self._running: dict[tuple[str, str], tuple[str, asyncio.Future[Outcome]]] = {}

    async def run(
        self, member_id: str, key: str, request_hash: str, call: Callable[[], Awaitable[Outcome]]
    ) -> Outcome:
        slot = (member_id, key)
        running = self._running.get(slot)
        if running is not None:
            if running[0] != request_hash:
                raise IdempotencyKeyReused(key)
            return self._as_replay(await asyncio.shield(running[1]))
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._running[slot] = (request_hash, future)
        try:
            result = await call()
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # mark retrieved: joiners re-raise it, nobody else must
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._running[slot]


async def replay_saved(
    pool: AsyncConnectionPool, member_id: str, key: str, request_hash: str
) -> Redeemed:
    """The saved redemption of a key that is done, as a replay."""
    async with pool.connection() as conn:
        row = await store.by_key(conn, member_id, key)
    if row is None:
        raise RequestInProgress(key)  # Redis saw it done, PostgreSQL not yet: retry
    if row["request_hash"] != request_hash:
        raise IdempotencyKeyReused(key)
    return Redeemed(store.redemption_from_row(row), replayed=True)
