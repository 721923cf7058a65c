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
