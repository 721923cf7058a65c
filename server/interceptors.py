"""The edge: one interceptor around every unary call (and client-streaming call, whose
request is then the stream of messages: CodeService.ImportCodes) that

- sets the request id (the gateway's `x-request-id` when it sends one, capped and cleaned
  before anything logs it) for the logs, and echoes it to the client as `x-request-id` in
  the response's trailing metadata, on every answer,
- skips a call whose deadline passed (or whose client left) while it waited to start,
- sheds the call when this process already has its limit in flight,
- checks the caller's credential and that its scopes allow the method (server/scopes.py),
  and sets the actor (subject, request id) the domain records operator changes with,
- holds each credential's subject, and each member a call names, to a rate (token buckets
  in this process: common/ratelimit.py),
- decodes the request itself, so a malformed message is INVALID_ARGUMENT naming the
  request, counted and logged like any call (grpc's own decoding answers UNKNOWN with a
  traceback, before any interceptor sees the call),
- maps domain and dependency errors to a status through server.errors (anything unknown
  becomes INTERNAL with a fixed message and a logged traceback),
- records the standard gRPC server metrics with the code actually sent (CANCELLED when
  the client gave up: asyncio's CancelledError is not an Exception),
- writes one structured access-log line: request id, subject, method, code, latency,
  idempotency key (INFO; DEBUG for health checks).

Doing all of it in one place means the metrics and the log see the same code the client got.
The wrapped handler and its metric series are built once per method, not once per call.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from common import actor, errors
from common.metrics import GRPC_CODES, Metrics
from common.ratelimit import TokenBuckets
from server import edge_errors, scopes, stream_edge
from server.credentials import Principal, Verifier
from server.errors import answer_for, status_for

access = logging.getLogger("surge.access")
request_id: ContextVar[str] = ContextVar("request_id", default="-")
REQUEST_ID_HEADER = "x-request-id"
AUTHORIZATION_HEADER = "authorization"
REQUEST_ID_MAX = 128
# What a request id may hold: enough for UUIDs, ULIDs and trace ids; nothing a log reader
# could mistake for structure (newlines, quotes, control characters).
_UNSAFE_IN_ID = re.compile(r"[^A-Za-z0-9._:/+=-]")

if TYPE_CHECKING:  # the stubs make these generic; the runtime classes are not
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every log record (as `request_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def clean_request_id(sent: str) -> str:
    """The client's request id, safe to log: unsafe characters dropped, at most
    REQUEST_ID_MAX long; a fresh UUID when nothing usable is left."""
    kept = _UNSAFE_IN_ID.sub("", sent)[:REQUEST_ID_MAX] if sent else ""
    return kept or str(uuid.uuid4())


class _Malformed:
    """What the edge's decoder returns for bytes that are not the request message."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _decoder(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        if deserialize is None:
            return data
        try:
            return deserialize(data)
        except Exception as e:  # protobuf's DecodeError, or anything a decoder raises
            return _Malformed(e)

    return decode


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream's messages, a malformed one raised as INVALID_ARGUMENT."""
    async for message in requests:
        if isinstance(message, _Malformed):
            raise errors.InvalidArgument(
                "request", "is not a valid message of this method's request type"
            ) from message.error
        yield message


def split_method(full: str) -> tuple[str, str]:
    """'/loyalty.v1.RedemptionService/Redeem' -> ('loyalty.v1.RedemptionService', 'Redeem')."""
    service, _, method = full.lstrip("/").partition("/")
    return service, method


def _member_named(request: Any) -> str:
    """The member a request acts for (`member_id`, or a transfer's sender), or ""."""
    return str(getattr(request, "member_id", "") or getattr(request, "from_member_id", ""))


# Never shed and never asks for a credential: a load balancer must be able to ask whether
# this process is alive.
_HEALTH = "grpc.health.v1.Health"
_REFLECTION = ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")
ANONYMOUS = Principal("anonymous", frozenset())


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        metrics: Metrics,
        *,
        access_log: bool,
        verifier: Verifier | None,
        reflection_open: bool = False,
        max_concurrent_calls: int = 0,
        subject_rate: TokenBuckets | None = None,
        member_rate: TokenBuckets | None = None,
    ) -> None:
        """verifier: checks credentials (None: SURGE_AUTH=NONE, every call is `anonymous`
        with every scope). reflection_open: reflection needs no credential.
        max_concurrent_calls: calls in flight at once in this process before new ones are
        refused RESOURCE_EXHAUSTED (0: no limit). Our own count rather than grpcio's
        maximum_concurrent_rpcs, which has been unreliable on the async server.
        subject_rate / member_rate: calls per credential subject / per member named in the
        request (None: no limit)."""
        self._subject_rate = subject_rate
        self._member_rate = member_rate
        self._metrics = metrics
        self._access_log = access_log
        self._verifier = verifier
        self._reflection_open = reflection_open
        self._wrapped: dict[str, Handler] = {}
        self._limit = max_concurrent_calls
        self._in_flight = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        full_method = handler_call_details.method
        wrapped = self._wrapped.get(full_method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary is None and handler.stream_unary is None:
            service, _ = split_method(full_method)
            if handler.unary_stream is not None and service.startswith("loyalty.v1."):
                # Ours (WatchEvents): the same edge, around a stream (server/stream_edge.py).
                wrapped = stream_edge.wrap(
                    full_method,
                    handler,
                    metrics=self._metrics,
                    verifier=self._verifier,
                    access_log=self._access_log,
                )
                self._wrapped[full_method] = wrapped
                return wrapped
            # Health Watch, reflection: streams, nothing of ours to map; reflection may still
            # need a credential (any scope: it shows the schema, not data).
            if service in _REFLECTION and not self._reflection_open:
                return self._refuse_stream_without_credential(handler_call_details, handler)
            return handler
        wrapped = self._wrap(full_method, handler)
        self._wrapped[full_method] = wrapped
        return wrapped

    def _wrap(self, full_method: str, handler: Handler) -> Handler:
        # A client stream (ImportCodes) goes through the same checks: its request is the
        # stream of messages, each decoded by the edge (a malformed one is INVALID_ARGUMENT).
        streaming = handler.unary_unary is None
        inner: Callable[..., Awaitable[Any]] = (
            handler.stream_unary if streaming else handler.unary_unary  # type: ignore[assignment]
        )
        service, method = split_method(full_method)
        labels = ("client_stream" if streaming else "unary", service, method)
        m = self._metrics
        started_total = m.rpc_started.labels(*labels)
        received = m.msg_received.labels(*labels)
        sent = m.msg_sent.labels(*labels)
        seconds = m.rpc_seconds.labels(*labels)
        handled = {code: m.rpc_handled.labels(*labels, code) for code in GRPC_CODES}
        access_log = self._access_log
        # A load balancer's health checks, every second or so per process, would drown
        # the access log: DEBUG for them, INFO for every other call.
        access_level = logging.DEBUG if service == _HEALTH else logging.INFO
        limited = self._limit > 0 and service != _HEALTH
        verifier = self._verifier if service != _HEALTH else None
        needed = scopes.needed_for(full_method)
        auth_refused = m.auth_refused
        subject_rate = self._subject_rate if service != _HEALTH else None
        # A member's own traffic (through a gateway) is held to the member's rate; an
        # earning system or an operator crediting one member in a batch is not.
        member_rate = self._member_rate if scopes.STOREFRONT in needed else None
        # Packed once: a storm sheds thousands a second, each must cost as little as it can.
        overloaded = status_for(errors.Overloaded(self._limit))
        assert overloaded is not None

        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            rid = ""
            authorization = None
            for key, value in context.invocation_metadata() or ():
                if key == REQUEST_ID_HEADER:
                    rid = str(value)
                elif key == AUTHORIZATION_HEADER:
                    authorization = str(value)
            rid = clean_request_id(rid)
            token = request_id.set(rid)
            # Echoed in the trailers of every answer (OK, error, shed): the client can quote
            # the id the logs and the audit trail know the call by. Trailers, not headers:
            # they go out with the status at no extra cost, and a call whose deadline passed
            # before it started is still answered (and counted) like any other.
            echo = ((REQUEST_ID_HEADER, rid),)
            actor_token = None
            principal = ANONYMOUS
            started = time.perf_counter()
            started_total.inc()
            received.inc()
            code = grpc.StatusCode.OK
            admitted = False
            try:
                remaining = context.time_remaining()
                if (remaining is not None and remaining <= 0) or context.cancelled():
                    raise edge_errors.DeadlinePassed()  # nobody waits for it: start nothing
                if limited:
                    if self._in_flight >= self._limit:
                        # Shed before any work, without raising: set the status and return.
                        code = overloaded.code
                        context.set_code(code)
                        context.set_details(overloaded.details)
                        context.set_trailing_metadata((*overloaded.trailing_metadata, *echo))
                        return None
                    self._in_flight += 1
                    admitted = True
                if verifier is not None:
                    try:
                        principal = verifier.principal(authorization)
                        if needed.isdisjoint(principal.scopes):
                            raise edge_errors.ScopeMissing(full_method, needed)
                    except errors.DomainError as refused:
                        auth_refused.labels(refused.reason).inc()
                        raise
                if subject_rate is not None:
                    wait = subject_rate.take(principal.subject)
                    if wait:
                        raise edge_errors.RateLimited(
                            "subject", principal.subject, subject_rate.rate_per_s, wait
                        )
                if member_rate is not None:
                    member = _member_named(request)
                    if member and (wait := member_rate.take(member)):
                        raise edge_errors.RateLimited(
                            "member", member, member_rate.rate_per_s, wait
                        )
                actor_token = actor.enter(actor.Actor(principal.subject, rid))
                if isinstance(request, _Malformed):
                    raise errors.InvalidArgument(
                        "request", "is not a valid message of this method's request type"
                    ) from request.error
                response = await inner(_checked(request) if streaming else request, context)
                context.set_trailing_metadata(echo)
                sent.inc()
                return response
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED  # the client cancelled or its deadline passed
                raise
            except Exception as exc:
                # Answered like the shed above: set the status and return. context.abort
                # would raise once more inside grpc; a flash sale past sell-out answers
                # SOLD_OUT thousands of times a second, and that raise cost as much as the
                # refusal itself (py-spy: docs/performance.md).
                code, details, metadata = answer_for(exc, full_method, rid)
                context.set_code(code)
                context.set_details(details)
                context.set_trailing_metadata((*metadata, *echo))
                return None
            finally:
                if admitted:
                    self._in_flight -= 1
                elapsed = time.perf_counter() - started
                code_name = GRPC_CODES[code.value[0]]
                handled[code_name].inc()
                seconds.observe(elapsed)
                # Health checks log at DEBUG: mostly not enabled, and then nothing is built.
                if access_log and access.isEnabledFor(access_level):
                    access.log(
                        access_level,
                        "rpc",
                        extra={
                            "request_id": rid,
                            "subject": principal.subject,
                            "method": full_method,
                            "code": code_name,
                            "latency_ms": round(elapsed * 1000, 3),
                            "idempotency_key": getattr(request, "idempotency_key", None) or None,
                        },
                    )
                if actor_token is not None:
                    actor.leave(actor_token)
                request_id.reset(token)

        make = (
            grpc.stream_unary_rpc_method_handler
            if streaming
            else grpc.unary_unary_rpc_method_handler
        )
        return make(
            wrapper,
            request_deserializer=_decoder(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _refuse_stream_without_credential(
        self, details: grpc.HandlerCallDetails, handler: Handler
    ) -> Handler:
        if self._verifier is None:
            return handler
        authorization = None
        for key, value in details.invocation_metadata or ():
            if key == AUTHORIZATION_HEADER:
                authorization = str(value)
        try:
            self._verifier.principal(authorization)
            return handler
        except errors.DomainError as refused:
            self._metrics.auth_refused.labels(refused.reason).inc()
            status = status_for(refused)
        assert status is not None

        async def refuse(_requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await context.abort(status.code, status.details, status.trailing_metadata)

        return grpc.stream_stream_rpc_method_handler(
            refuse,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
