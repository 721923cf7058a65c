"""Opaque page tokens for keyset pagination over (created_at, id), newest or oldest first."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_size(value: int, *, default: int = DEFAULT_PAGE_SIZE) -> int:
    if value == 0:
        return default
    if value < 0 or value > MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
    return value


def encode(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> tuple[datetime, str] | None:
    """None for the first page; InvalidArgument for a token this service did not issue."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, row_id = json.loads(raw)
        return datetime.fromisoformat(created_at), str(row_id)
    except (ValueError, TypeError) as e:
        raise InvalidArgument("page_token", "is not a token this service issued") from e
