"""Credentials for tests: the secret the test servers check tokens with, tokens signed with
it, and channels that send one on every call."""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from loadtest.credentials import aio_channel
from server import scopes
from server.credentials import mint

TEST_SECRET = b"surge-tests-only-secret-0123456789abcdef"
# The subject of the credential the test channels carry (what the audit trail records).
TEST_SUBJECT = "test-suite"


def token(
    scope_names: Iterable[str] = scopes.ALL,
    *,
    subject: str = TEST_SUBJECT,
    secret: bytes = TEST_SECRET,
    ttl_s: float = 86_400,  # a day: tests that skew the clock by hours still hold a valid one
    audience: str = "surge",
    issuer: str = "surge",
) -> str:
    return mint(
        secret, subject=subject, scopes=scope_names, audience=audience, issuer=issuer, ttl_s=ttl_s
    )


def bearer(value: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {value}"),)


def channel(target: str, credential: str | None = None) -> grpc.aio.Channel:
    """A plaintext channel whose unary calls carry `credential` (default: every scope)."""
    return aio_channel(target, bearer(credential or token()))
