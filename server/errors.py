"""The one table that maps errors to gRPC status codes, and the rich status they carry.

The most specific class wins (the table is walked along the exception's MRO). Business
refusals carry a google.rpc.ErrorInfo with the UPPER_SNAKE reason; bad input also carries a
google.rpc.BadRequest naming the field. Anything not in the table is INTERNAL with a fixed
message: driver text and tracebacks go to the log, never to the caller.
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from common import dependencies, errors
from server import edge_errors

_rpc_log = logging.getLogger("surge.rpc")  # the edge's: a call that failed, a dependency down

ERROR_DOMAIN = "surge.loyalty.v1"

STATUS_BY_ERROR: dict[type[BaseException], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.IdempotencyKeyReused: grpc.StatusCode.ALREADY_EXISTS,
    errors.RequestIdReused: grpc.StatusCode.ALREADY_EXISTS,
    errors.RequestInProgress: grpc.StatusCode.ABORTED,
    errors.HoldExpired: grpc.StatusCode.ABORTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    edge_errors.RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.CommitQueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    edge_errors.DeadlinePassed: grpc.StatusCode.DEADLINE_EXCEEDED,
    edge_errors.CredentialMissing: grpc.StatusCode.UNAUTHENTICATED,
    edge_errors.CredentialInvalid: grpc.StatusCode.UNAUTHENTICATED,
    edge_errors.ScopeMissing: grpc.StatusCode.PERMISSION_DENIED,
    errors.Refusal: grpc.StatusCode.FAILED_PRECONDITION,
}

# How long a client should wait before retrying (google.rpc.RetryInfo): a dependency coming
# back (a restart, a failover, memory freed) takes about a second; a lost race, at once.
_RETRY_DELAY_S = {
    grpc.StatusCode.UNAVAILABLE: 1.0,
    grpc.StatusCode.ABORTED: 0.05,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 0.25,  # a moment: calls in flight end in milliseconds
}


def status_for(exc: BaseException) -> grpc.Status | None:
    """The rich status for a known error, or None (the caller answers INTERNAL)."""
    for cls in type(exc).__mro__:
        code = STATUS_BY_ERROR.get(cls)
        if code is not None and isinstance(exc, errors.DomainError):
            return _rich(code, exc.message, exc.reason, exc.metadata(), exc)
    failure = dependencies.failure_of(exc)
    if failure is None:
        return None
    if failure.lost_race:
        code, reason = grpc.StatusCode.ABORTED, "CONCURRENT_UPDATE"
        message = "a concurrent change won; retry with the same idempotency key"
    else:
        code, reason = grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE"
        message = (
            f"{failure.dependency} is unavailable ({failure.condition}); retry with the same key"
        )
    metadata = {"dependency": failure.dependency, "condition": failure.condition}
    return _rich(code, message, reason, metadata, exc)


def _rich(
    code: grpc.StatusCode, message: str, reason: str, metadata: dict[str, str], exc: BaseException
) -> grpc.Status:
    violation = (exc.field, exc.description) if isinstance(exc, errors.InvalidArgument) else None
    retry = _RETRY_DELAY_S.get(code, 0.0)
    if isinstance(exc, edge_errors.RateLimited):
        # Its own key and wait each time: packed afresh, not filling the cache.
        quota = (f"{exc.kind}:{exc.key}", exc.message)
        wait = max(exc.retry_after_s, 0.001)
        return _packed.__wrapped__(
            code, message, reason, tuple(metadata.items()), None, wait, quota
        )
    return _packed(code, message, reason, tuple(metadata.items()), violation, retry)


@functools.lru_cache(maxsize=4096)
def _packed(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    metadata: tuple[tuple[str, str], ...],
    violation: tuple[str, str] | None,
    retry_delay_s: float = 0.0,
    quota: tuple[str, str] | None = None,
) -> grpc.Status:
    """Packing the details costs ~40 µs, as much as a third of a refusal's own work; a hot
    item past sold out answers the same status thousands of times, so it is packed once.
    The result is immutable (a code, a string and a tuple of metadata)."""
    details = []
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=dict(metadata))
    )
    details.append(info)
    if violation is not None:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=violation[0], description=violation[1]
                    )
                ]
            )
        )
        details.append(bad)
    if quota is not None:
        failure = any_pb2.Any()
        failure.Pack(
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(subject=quota[0], description=quota[1])
                ]
            )
        )
        details.append(failure)
    if retry_delay_s > 0:
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromTimedelta(timedelta(seconds=retry_delay_s))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    rich: grpc.Status = rpc_status.to_status(status)
    return rich


Metadata = tuple[tuple[str, str | bytes], ...]


def answer_for(exc: Exception, full_method: str, rid: str) -> tuple[grpc.StatusCode, str, Metadata]:
    """What the edge answers when a call (unary or stream) ends in `exc`: a known error's
    rich status, or INTERNAL with the request id (the traceback logged, never sent); a
    dependency outage is logged as a warning."""
    status = status_for(exc)
    if status is None:
        _rpc_log.exception("%s failed", full_method)
        return grpc.StatusCode.INTERNAL, f"internal error (request id {rid})", ()
    if status.code == grpc.StatusCode.UNAVAILABLE:
        _rpc_log.warning("%s: dependency unavailable: %r", full_method, exc)
    return status.code, status.details, tuple(status.trailing_metadata)
