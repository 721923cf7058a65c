"""Checks on request fields. Each failure is an InvalidArgument naming the field."""

from __future__ import annotations

import re
import uuid

from common.errors import InvalidArgument

MAX_KEY_LENGTH = 128
MAX_NAME_LENGTH = 200
MAX_REASON_LENGTH = 500
# Printable ASCII without leading/trailing blanks keeps keys safe in logs, Redis keys and SQL.
# Used with fullmatch: a "$" would let a trailing newline through.
_KEY_RE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
# An ISO 4217 alphabetic code as the standard writes it: "CNY", "EUR". Only its form is
# checked; whether it is the one expected is the caller's rule. Used with fullmatch (a "$"
# would let a trailing newline through).
CURRENCY_RE = re.compile(r"[A-Z]{3}")


def uuid_id(field: str, value: str) -> str:
    """A resource id: a UUID in canonical lower-case form."""
    if not value:
        raise InvalidArgument(field, "is required")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(field, "must be a UUID") from None
    return str(parsed)


def idempotency_key(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidArgument(field, f"must be at most {MAX_KEY_LENGTH} characters")
    if not _KEY_RE.fullmatch(value):
        raise InvalidArgument(field, "must be printable ASCII without leading or trailing spaces")
    return value


def text(field: str, value: str, *, max_length: int, required: bool) -> str:
    stripped = value.strip()
    if required and not stripped:
        raise InvalidArgument(field, "is required")
    if len(value) > max_length:
        raise InvalidArgument(field, f"must be at most {max_length} characters")
    if any(ord(ch) < 0x20 for ch in value):
        raise InvalidArgument(field, "must not contain control characters")
    return stripped


def int_range(field: str, value: int, *, minimum: int, maximum: int) -> int:
    if value < minimum or value > maximum:
        raise InvalidArgument(field, f"must be between {minimum} and {maximum}")
    return value


def positive(field: str, value: int) -> int:
    """A count or amount that must be given: 0 (a proto3 field left out) is missing."""
    if value <= 0:
        raise InvalidArgument(field, "is required and must be above 0")
    return value


def currency(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not CURRENCY_RE.fullmatch(value):
        raise InvalidArgument(field, "must be an ISO 4217 code: three upper-case letters")
    return value
