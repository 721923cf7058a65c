"""Bearer credentials: who is calling and with which scopes.

Every call but health carries `authorization: Bearer <JWT>`. The token is checked with
PyJWT against a fixed list of algorithms, each tied to one kind of key, so a token cannot
choose how it is checked (no `alg: none`, no HS256 signed with a public key):

- HS256 with a shared secret (SURGE_JWT_SECRET_FILE or SURGE_JWT_SECRET): what `surge token`
  signs, and the embedded default's development secret;
- RS256 / ES256 with the public keys of a JWKS file (SURGE_JWT_JWKS_FILE), for tokens an
  identity provider issues, picked by the token's `kid`.

`exp`, `sub`, `aud` and `iss` are required, `nbf` checked when present, with a small leeway
for clock skew. Scopes come from `scope` (space-separated, as OAuth 2 sends them) or `scp`
(a list). A gateway sends the same token on thousands of calls, so a verified token is
remembered (bounded, until it expires) and costs a dictionary lookup after the first call.
Nothing here logs a token or a secret.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from common.env import ConfigError
from server.edge_errors import CredentialInvalid, CredentialMissing

ASYMMETRIC = ("RS256", "ES256")
SUBJECT_MAX = 200
DEV_SECRET_FILE = "dev-jwt-secret"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class Keys:
    """What tokens are checked against. At least one of secret / jwks."""

    secret: bytes | None
    jwks: jwt.PyJWKSet | None
    audience: str
    issuer: str
    leeway_s: float

    @classmethod
    def load(
        cls,
        *,
        secret: bytes | None,
        jwks_file: Path | None,
        audience: str,
        issuer: str,
        leeway_s: float,
    ) -> Keys:
        jwks = None
        if jwks_file is not None:
            try:
                jwks = jwt.PyJWKSet.from_json(jwks_file.read_text())
            except (OSError, ValueError, jwt.PyJWTError) as e:
                raise ConfigError(f"SURGE_JWT_JWKS_FILE {jwks_file}: {e}") from None
            if not any(k.algorithm_name in ASYMMETRIC for k in jwks.keys):
                raise ConfigError(f"SURGE_JWT_JWKS_FILE {jwks_file}: no RS256 or ES256 key")
        if secret is None and jwks is None:
            raise ConfigError("no key to check credentials with")
        return cls(secret, jwks, audience, issuer, leeway_s)


class Verifier:
    """Turns an `authorization` header into a Principal, or raises CredentialMissing /
    CredentialInvalid (with a few words saying why, never the token)."""

    CACHE_MAX = 4096

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self._verified: dict[str, tuple[Principal, float]] = {}

    def principal(self, authorization: str | None) -> Principal:
        if not authorization:
            raise CredentialMissing()
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise CredentialInvalid("expected 'Bearer <token>'")
        hit = self._verified.get(token)
        if hit is not None:
            principal, expires_at = hit
            if time.time() <= expires_at + self._keys.leeway_s:
                return principal
            del self._verified[token]
            raise CredentialInvalid("expired")
        principal, expires_at = self._verify(token)
        if len(self._verified) >= self.CACHE_MAX:
            self._verified.clear()  # rare: a gateway holds a handful of tokens at a time
        self._verified[token] = (principal, expires_at)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise CredentialInvalid("not a JWT") from None
        algorithm = header.get("alg")
        key = self._key_for(algorithm, header.get("kid"))
        k = self._keys
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                audience=k.audience,
                issuer=k.issuer,
                leeway=k.leeway_s,
                options={"require": ["exp", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise CredentialInvalid("expired") from None
        except jwt.ImmatureSignatureError:
            raise CredentialInvalid("not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise CredentialInvalid(f"wrong audience (want {k.audience!r})") from None
        except jwt.InvalidIssuerError:
            raise CredentialInvalid(f"wrong issuer (want {k.issuer!r})") from None
        except jwt.MissingRequiredClaimError as e:
            raise CredentialInvalid(f"missing claim {e.claim!r}") from None
        except jwt.InvalidSignatureError:
            raise CredentialInvalid("bad signature") from None
        except jwt.PyJWTError:
            raise CredentialInvalid("malformed") from None
        return _principal_of(claims), float(claims["exp"])

    def _key_for(self, algorithm: object, kid: object) -> Any:
        k = self._keys
        if algorithm == "HS256" and k.secret is not None:
            return k.secret
        if algorithm in ASYMMETRIC and k.jwks is not None:
            candidates = [key for key in k.jwks.keys if key.algorithm_name == algorithm]
            if kid is not None:
                candidates = [key for key in candidates if key.key_id == kid]
            if len(candidates) == 1:
                return candidates[0].key
            raise CredentialInvalid("no key for this token's kid")
        raise CredentialInvalid(f"algorithm {str(algorithm)[:16]!r} not accepted")


def _principal_of(claims: dict[str, Any]) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > SUBJECT_MAX:
        raise CredentialInvalid(f"'sub' must be a string of 1..{SUBJECT_MAX} characters")
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        scopes = raw.split()
    elif isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        scopes = raw
    else:
        raise CredentialInvalid("'scope' must be a space-separated string or a list of strings")
    return Principal(subject, frozenset(scopes))


def mint(
    secret: bytes,
    *,
    subject: str,
    scopes: Iterable[str],
    audience: str,
    issuer: str,
    ttl_s: float,
) -> str:
    """An HS256 token, as `surge token` makes them (for development, tests and tools that
    share the secret; production gateways usually get theirs from an identity provider)."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "scope": " ".join(sorted(set(scopes))),
        "aud": audience,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + int(ttl_s),
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def dev_secret(data_dir: Path) -> bytes:
    """The embedded default's secret: made once under the data folder, readable only by its
    owner, so `make run` needs no setup and its tokens survive a restart."""
    path = data_dir / DEV_SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_bytes().strip()
