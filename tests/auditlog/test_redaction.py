"""What an audit event may not keep: secret fields are masked at any depth, the rest kept."""

from __future__ import annotations

import pytest

from auditlog import REDACTED, redact
from auditlog.redaction import is_secret


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "new_password",
        "client_secret",
        "access_token",
        "refreshToken",
        "credentials",
        "Authorization",
        "private_key",
        "api_key",
        "signing-key",
        "key",
        "key_material",
        "keys",
        "jwt.signature",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret(name)


@pytest.mark.parametrize(
    "name",
    ["idempotency_key", "key_id", "signing_key_ids", "reason", "sku", "monkey", "keyboard"],
)
def test_names_that_are_not_secret(name: str) -> None:
    assert not is_secret(name)


def test_redact_masks_secret_values_at_any_depth_and_keeps_the_rest() -> None:
    content = {
        "member_id": "m-1",
        "delta": -3,
        "idempotency_key": "k-1",
        "password": "hunter2",
        "credential": {"subject": "ops:ann", "token": "eyJ..."},
        "keys": [{"key_id": "k1", "private_key": "-----BEGIN"}],
        "operator_id": None,
    }

    redacted = redact(content)

    assert redacted == {
        "member_id": "m-1",
        "delta": -3,
        "idempotency_key": "k-1",
        "password": REDACTED,
        "credential": REDACTED,  # a secret name masks its whole value
        "keys": REDACTED,
        "operator_id": None,
    }
    assert redact({"batch": [{"key_id": "k1", "private_key": "x"}, "plain"]}) == {
        "batch": [{"key_id": "k1", "private_key": REDACTED}, "plain"]
    }
    assert content["password"] == "hunter2"  # a copy: the caller's dict is untouched
