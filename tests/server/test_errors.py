"""The error table: most specific class wins; unknown errors are not mapped."""

from __future__ import annotations

import grpc
import psycopg
import redis.exceptions

from common import errors
from server.errors import status_for


def test_refusals_are_failed_precondition_with_reason() -> None:
    status = status_for(errors.SoldOut("c1", 0))
    assert status is not None and status.code == grpc.StatusCode.FAILED_PRECONDITION


def test_key_reuse_is_already_exists_and_races_are_aborted() -> None:
    assert status_for(errors.IdempotencyKeyReused("k")).code == grpc.StatusCode.ALREADY_EXISTS  # type: ignore[union-attr]
    assert status_for(errors.RequestInProgress("k")).code == grpc.StatusCode.ABORTED  # type: ignore[union-attr]
    assert status_for(errors.HoldExpired("k")).code == grpc.StatusCode.ABORTED  # type: ignore[union-attr]


def test_dependencies_down_are_unavailable_without_driver_text() -> None:
    for exc in (redis.exceptions.ConnectionError("secret host"), psycopg.OperationalError("pw=x")):
        status = status_for(exc)
        assert status is not None and status.code == grpc.StatusCode.UNAVAILABLE
        assert "secret" not in status.details and "pw" not in status.details


def test_unknown_errors_are_left_to_internal() -> None:
    assert status_for(KeyError("boom")) is None


def test_redis_refusing_writes_is_unavailable_and_a_lost_race_is_aborted() -> None:
    """OOM (maxmemory + noeviction), READONLY (a replica after failover) and Cluster
    redirections are UNAVAILABLE like a dead Redis; a deadlock or serialization failure is
    ABORTED (nothing was written: retry). A script's own error stays INTERNAL (a bug)."""
    unavailable = (
        redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.exceptions.MovedError("3999 127.0.0.1:6381"),
        redis.exceptions.TryAgainError("Multiple keys request during rehashing of slot"),
        redis.exceptions.ClusterDownError("The cluster is down"),
    )
    for exc in unavailable:
        status = status_for(exc)
        assert status is not None and status.code == grpc.StatusCode.UNAVAILABLE, exc
        assert "maxmemory" not in status.details and "127.0.0.1" not in status.details
    for lost in (psycopg.errors.DeadlockDetected(), psycopg.errors.SerializationFailure()):
        status = status_for(lost)
        assert status is not None and status.code == grpc.StatusCode.ABORTED
    assert status_for(redis.exceptions.ResponseError("ERR user_script:1: boom")) is None
