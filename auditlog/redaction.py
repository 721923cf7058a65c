"""What an audit event may not keep: secrets. The content of an event is the request of an
operator change; before it is stored, every value whose field name says it is secret is
replaced by REDACTED, at any depth (dicts within dicts or lists). The field stays, so a
reader sees that it was sent, never what it was.

A field is secret when its name (case-insensitive) contains one of SECRET_WORDS
(password, secret, token, credential, ...), or has `key` as one of its words (split on
`_`, `-`, `.`) and does not end in `id` / `ids`: `api_key`, `private_key`, `key_material`
and `signing_key` are masked, `key_id` is kept (it names a key, it is not one). The one
exception is `idempotency_key`, a name the caller gives its request (the access log
carries it too), kept so a replay can be matched to its event.

Over-inclusive on purpose (`public_key` is masked too): a field masked by mistake costs
a detail; a secret kept costs the secret. Secrets typed into free text (a reason) cannot
be recognised and are kept as written. Shipping addresses never reach this trail: no
operator change carries one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"
SECRET_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "authorization",
    "cookie",
    "private",
    "signature",
)
NOT_SECRET = frozenset({"idempotency_key"})
_WORDS = re.compile(r"[_.\-]+")


def is_secret(name: str) -> bool:
    lowered = name.lower()
    if lowered in NOT_SECRET:
        return False
    if any(word in lowered for word in SECRET_WORDS):
        return True
    words = [w for w in _WORDS.split(lowered) if w]
    return ("key" in words or "keys" in words) and words[-1] not in ("id", "ids")


def redact(content: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `content` with every secret field's value replaced by REDACTED."""
    return {
        name: REDACTED if is_secret(name) else _redact_value(value)
        for name, value in content.items()
    }


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value
