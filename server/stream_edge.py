"""The edge for Surge's server-streaming calls (WatchEvents): the same credential, scope,
actor, request id, error table and metrics as a unary call (server/interceptors.py), around
an async generator. Not counted against SURGE_MAX_CONCURRENT_CALLS nor the per-subject rate:
a stream lives for hours and costs nothing while it waits (surge_events_watchers counts
them). Health Watch and reflection are not ours and are not wrapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from common import actor, errors
from common.metrics import GRPC_CODES, Metrics
from server import edge_errors, scopes
from server.credentials import Principal, Verifier
from server.errors import answer_for

if TYPE_CHECKING:
    from server.interceptors import Handler

access = logging.getLogger("surge.access")


def wrap(
    full_method: str,
    handler: Handler,
    *,
    metrics: Metrics,
    verifier: Verifier | None,
    access_log: bool,
) -> Handler:
    # Imported here: server.interceptors imports this module.
    from server.interceptors import (
        ANONYMOUS,
        AUTHORIZATION_HEADER,
        REQUEST_ID_HEADER,
        _decoder,
        _Malformed,
        clean_request_id,
        request_id,
        split_method,
    )

    inner: Any = handler.unary_stream
    service, method = split_method(full_method)
    labels = ("server_stream", service, method)
    started_total = metrics.rpc_started.labels(*labels)
    sent = metrics.msg_sent.labels(*labels)
    seconds = metrics.rpc_seconds.labels(*labels)
    needed = scopes.needed_for(full_method)

    async def wrapper(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        rid, authorization = "", None
        for key, value in context.invocation_metadata() or ():
            if key == REQUEST_ID_HEADER:
                rid = str(value)
            elif key == AUTHORIZATION_HEADER:
                authorization = str(value)
        rid = clean_request_id(rid)
        token = request_id.set(rid)
        echo = ((REQUEST_ID_HEADER, rid),)
        principal: Principal = ANONYMOUS
        actor_token = None
        code = grpc.StatusCode.OK
        started = time.perf_counter()
        started_total.inc()
        metrics.msg_received.labels(*labels).inc()
        try:
            if verifier is not None:
                try:
                    principal = verifier.principal(authorization)
                    if needed.isdisjoint(principal.scopes):
                        raise edge_errors.ScopeMissing(full_method, needed)
                except errors.DomainError as refused:
                    metrics.auth_refused.labels(refused.reason).inc()
                    raise
            actor_token = actor.enter(actor.Actor(principal.subject, rid))
            if isinstance(request, _Malformed):
                raise errors.InvalidArgument(
                    "request", "is not a valid message of this method's request type"
                ) from request.error
            async for response in inner(request, context):
                yield response
                sent.inc()
            context.set_trailing_metadata(echo)
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED  # the consumer went away
            raise
        except Exception as exc:
            code, details, metadata = answer_for(exc, full_method, rid)
            await context.abort(code, details, (*metadata, *echo))
            raise  # unreachable: abort raises
        finally:
            elapsed = time.perf_counter() - started
            code_name = GRPC_CODES[code.value[0]]
            metrics.rpc_handled.labels(*labels, code_name).inc()
            seconds.observe(elapsed)
            if access_log:
                access.info(
                    "rpc",
                    extra={
                        "request_id": rid,
                        "subject": principal.subject,
                        "method": full_method,
                        "code": code_name,
                        "latency_ms": round(elapsed * 1000, 3),
                    },
                )
            # A generator closed from elsewhere runs this in another context: nothing to reset.
            with contextlib.suppress(ValueError):
                if actor_token is not None:
                    actor.leave(actor_token)
                request_id.reset(token)

    return grpc.unary_stream_rpc_method_handler(
        wrapper,
        request_deserializer=_decoder(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )
