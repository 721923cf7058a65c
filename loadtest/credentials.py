"""The credential the load test, the soak and the bench call with.

A run that starts its own server gives it a fresh secret (unless SURGE_JWT_* already name
keys) and signs one token with every scope (subject `loadtest`), passed to the load
generators as SURGE_TOKEN. Against another deployment, set SURGE_TOKEN to a token that
deployment accepts (`surge token --scope all` where it runs).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import grpc

from server import scopes
from server.credentials import mint

KEY_SETTINGS = ("SURGE_JWT_SECRET", "SURGE_JWT_SECRET_FILE", "SURGE_JWT_JWKS_FILE")


def with_credentials(env: Mapping[str, str], subject: str = "loadtest") -> dict[str, str]:
    """`env` for a server this run starts, plus SURGE_TOKEN for its clients."""
    out = dict(env)
    if out.get("SURGE_TOKEN"):
        return out
    if any(out.get(name) for name in KEY_SETTINGS) and not out.get("SURGE_JWT_SECRET"):
        raise SystemExit("set SURGE_TOKEN: this run cannot sign for the keys SURGE_JWT_* name")
    secret = out.setdefault("SURGE_JWT_SECRET", secrets.token_urlsafe(48))
    out["SURGE_TOKEN"] = mint(
        secret.encode(),
        subject=subject,
        scopes=scopes.ALL,
        audience=out.get("SURGE_JWT_AUDIENCE") or "surge",
        issuer=out.get("SURGE_JWT_ISSUER") or "surge",
        ttl_s=24 * 3600,
    )
    return out


def metadata(env: Mapping[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """The `authorization` header for SURGE_TOKEN (nothing when it is unset)."""
    token = (os.environ if env is None else env).get("SURGE_TOKEN")
    return (("authorization", f"Bearer {token}"),) if token else ()


class _Details(
    NamedTuple(
        "_Details",
        [
            ("method", str),
            ("timeout", float | None),
            ("metadata", Any),
            ("credentials", Any),
            ("wait_for_ready", bool | None),
            ("compression", Any),
        ],
    ),
    grpc.ClientCallDetails,
):
    pass


class SendsCredential(grpc.UnaryUnaryClientInterceptor):
    """Adds the `authorization` header to every unary call on a synchronous channel."""

    def __init__(self, header: tuple[tuple[str, str], ...]) -> None:
        self._header = header

    def intercept_unary_unary(
        self,
        continuation: Callable[[Any, Any], Any],
        client_call_details: Any,
        request: Any,
    ) -> Any:
        d = client_call_details
        sent = tuple(d.metadata or ()) + self._header
        details = _Details(
            d.method, d.timeout, sent, d.credentials, d.wait_for_ready, d.compression
        )
        return continuation(details, request)


def authorised(channel: grpc.Channel, env: Mapping[str, str] | None = None) -> grpc.Channel:
    return grpc.intercept_channel(channel, SendsCredential(metadata(env)))


class AsyncSendsCredential(grpc.aio.UnaryUnaryClientInterceptor):
    """The same for grpc.aio channels; a call that already carries `authorization` keeps
    its own."""

    def __init__(self, header: tuple[tuple[str, str], ...]) -> None:
        self._header = header

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        d = client_call_details
        sent = list(d.metadata or ())
        if not any(key == "authorization" for key, _ in sent):
            sent.extend(self._header)
        details = grpc.aio.ClientCallDetails(
            d.method, d.timeout, grpc.aio.Metadata(*sent), d.credentials, d.wait_for_ready
        )
        return await continuation(details, request)


def aio_channel(target: str, header: tuple[tuple[str, str], ...]) -> grpc.aio.Channel:
    """A plaintext grpc.aio channel whose unary calls carry `header`."""
    return grpc.aio.insecure_channel(target, interceptors=[AsyncSendsCredential(header)])
