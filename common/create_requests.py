"""Request ids for creates (AIP-155): CreateMember, CreateItem and CreateCampaign take an
optional request_id so that a retry whose first reply was lost gets the resource the first
attempt made, not ALREADY_EXISTS (or, for a campaign, a second allotment of the stock).

The rule, for one kind of resource and one request_id:
- the same request again: the resource the first made (the caller answers it as it is now;
  nothing is written again, no audit event, no stock moved);
- another request (any field differs): RequestIdReused, ALREADY_EXISTS naming the resource;
- retries racing each other: one resource. `claim` takes a transaction-scoped advisory lock
  on (kind, request_id) before it reads, so the second waits for the first's commit and
  then reads its row; the primary key of create_requests is the last word.

How a create uses it, inside the create's one transaction:

    request = create_requests.of(MEMBER, request_id, display_name=..., ...)   # validation
    try:
        async with pool.connection() as conn, conn.transaction():
            await create_requests.claim(conn, request)    # may raise Replayed
            ... the insert ...
            await create_requests.record(conn, request, new_id)
    except create_requests.Replayed as replay:
        return await self.get(replay.resource_id)

With no request_id (`of` returns None) claim and record do nothing: the create behaves as it
did before request ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from psycopg import AsyncConnection

from common import validation
from common.errors import RequestIdReused

MEMBER = "member"
ITEM = "item"
CAMPAIGN = "campaign"
KINDS = (MEMBER, ITEM, CAMPAIGN)  # create_requests.kind's CHECK (migration 0024)


@dataclass(frozen=True)
class CreateRequest:
    kind: str
    request_id: str
    request_hash: str  # SHA-256 (hex) of every field of the request, as validated


class Replayed(Exception):
    """Raised by claim inside a create's transaction (rolling back nothing it wrote) when
    the same request was made before: the caller answers `resource_id`. Never reaches the
    edge: each create catches it."""

    def __init__(self, resource_id: str) -> None:
        super().__init__(resource_id)
        self.resource_id = resource_id


def of(kind: str, request_id: str, /, **fields: Any) -> CreateRequest | None:
    """The create's request id and the hash of its fields; None without a request id.
    InvalidArgument naming request_id unless it is 1..128 printable ASCII."""
    assert kind in KINDS, kind
    if not request_id:
        return None
    request_id = validation.idempotency_key("request_id", request_id)
    return CreateRequest(kind, request_id, fingerprint(fields))


def fingerprint(fields: Mapping[str, Any]) -> str:
    """Equal for equal requests whatever the order of the fields (or of a map's keys)."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):  # one instant, one text, whatever its time zone
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot hash a {type(value).__name__}")


async def claim(conn: AsyncConnection[Any], request: CreateRequest | None) -> None:
    """Inside the create's transaction, before it writes: raises Replayed for the same
    request, RequestIdReused for another; returns when the request id is new (its row is
    written by `record` in the same transaction, under the lock taken here)."""
    if request is None:
        return
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('create_request:' || %s || ':' || %s, 0))",
        (request.kind, request.request_id),
    )
    cur = await conn.execute(
        "SELECT request_hash, resource_id::text FROM create_requests "
        "WHERE kind = %s AND request_id = %s",
        (request.kind, request.request_id),
    )
    row = await cur.fetchone()
    if row is None:
        return
    if row[0] != request.request_hash:
        raise RequestIdReused(request.kind, request.request_id, str(row[1]))
    raise Replayed(str(row[1]))


async def record(
    conn: AsyncConnection[Any], request: CreateRequest | None, resource_id: str
) -> None:
    """The request id now names `resource_id` (in the create's transaction)."""
    if request is None:
        return
    await conn.execute(
        "INSERT INTO create_requests (kind, request_id, request_hash, resource_id) "
        "VALUES (%s, %s, %s, %s)",
        (request.kind, request.request_id, request.request_hash, resource_id),
    )
