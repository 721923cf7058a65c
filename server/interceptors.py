"""Server interceptors: a request id for every call, and the edge where errors become statuses."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from server.errors import status_for

log = logging.getLogger("surge.rpc")
request_id: ContextVar[str] = ContextVar("request_id", default="-")
REQUEST_ID_HEADER = "x-request-id"

if TYPE_CHECKING:  # the stubs make these generic; the runtime classes are not
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every log record (as %(request_id)s)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary-unary handler: sets the request id (the gateway's x-request-id when
    it sends one), maps domain and dependency errors through server.errors, and turns
    anything else into INTERNAL with a fixed message and a logged traceback."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # health Watch, reflection streams: nothing of ours to map
        inner: Callable[..., Awaitable[Any]] = handler.unary_unary
        method = handler_call_details.method
        incoming = dict(handler_call_details.invocation_metadata or ())

        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            rid = str(incoming.get(REQUEST_ID_HEADER) or uuid.uuid4())
            token = request_id.set(rid)
            started = time.perf_counter()
            try:
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                status = status_for(exc)
                if status is None:
                    log.exception("%s failed", method)
                    await context.abort(
                        grpc.StatusCode.INTERNAL, f"internal error (request id {rid})"
                    )
                    raise  # unreachable: abort raises
                if status.code == grpc.StatusCode.UNAVAILABLE:
                    log.warning("%s: dependency unavailable: %r", method, exc)
                await context.abort(status.code, status.details, status.trailing_metadata)
                raise
            finally:
                log.debug("%s took %.1f ms", method, (time.perf_counter() - started) * 1000)
                request_id.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            wrapper,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
