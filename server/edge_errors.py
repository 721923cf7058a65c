"""What the edge refuses before any domain code runs: a missing or refused credential, a
missing scope, a caller past its rate, a call whose deadline has passed. DomainErrors like
the rest, mapped in the one table (server/errors.py).

DomainError
├── CredentialMissing                         no bearer credential on the call
├── CredentialInvalid(problem)                expired, bad signature, wrong audience, ...
├── ScopeMissing(method, needed)              a valid credential without the method's scope
├── RateLimited(kind, key, rate, retry_after_s)  a caller past its rate (retryable)
└── DeadlinePassed                            the call's deadline passed before it started
"""

from __future__ import annotations

from common.errors import DomainError


class CredentialMissing(DomainError):
    """The call carries no `authorization: Bearer <token>` metadata."""

    reason = "CREDENTIAL_MISSING"

    def __init__(self) -> None:
        super().__init__("this call needs a credential: metadata 'authorization: Bearer <token>'")


class CredentialInvalid(DomainError):
    """A credential was sent and refused. `problem` says why in a few words (expired, bad
    signature, wrong audience, ...): enough for the caller to fix it, nothing of the token."""

    reason = "CREDENTIAL_INVALID"

    def __init__(self, problem: str) -> None:
        super().__init__(f"the credential was refused: {problem}")
        self.problem = problem

    def metadata(self) -> dict[str, str]:
        return {"problem": self.problem}


class ScopeMissing(DomainError):
    """A valid credential whose scopes do not include one the method needs. Decided from the
    method alone, before any lookup, so it never says whether a resource exists."""

    reason = "SCOPE_MISSING"

    def __init__(self, method: str, needed: frozenset[str]) -> None:
        wanted = " or ".join(sorted(needed)) or "a scope no credential has"
        super().__init__(f"{method} needs the scope {wanted}")
        self.method, self.needed = method, needed

    def metadata(self) -> dict[str, str]:
        return {"method": self.method, "needed_scopes": " ".join(sorted(self.needed))}


class RateLimited(DomainError):
    """A caller (a credential's subject, or calls naming one member) is past its rate in this
    process; nothing was started. The edge adds a google.rpc.QuotaFailure and a RetryInfo."""

    reason = "RATE_LIMITED"

    def __init__(self, kind: str, key: str, rate_per_s: float, retry_after_s: float) -> None:
        super().__init__(f"too many calls for this {kind} ({rate_per_s:g}/s); retry shortly")
        self.kind, self.key = kind, key
        self.rate_per_s, self.retry_after_s = rate_per_s, retry_after_s

    def metadata(self) -> dict[str, str]:
        return {"limit": self.kind, "calls_per_second": f"{self.rate_per_s:g}"}


class DeadlinePassed(DomainError):
    """The call's deadline had passed (or its client had gone) before any work started: the
    server skips it. Nobody is waiting for the answer; the status is for the metrics."""

    reason = "DEADLINE_PASSED"

    def __init__(self) -> None:
        super().__init__("the call's deadline passed before the server could start it")
