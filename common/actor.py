"""Who is making the current call: the credential's subject and the request id, set by the
gRPC edge for the duration of one call and read by the domain wherever it records an
operator's change (the audit trail, ledger entries made by hand). Domain code knows nothing
of gRPC or tokens; it only reads this.

Outside a call (background jobs, the command line) the actor is SYSTEM unless a command sets
its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    subject: str  # the credential's `sub`, e.g. "ops:alice" or "gateway-eu"
    request_id: str = "-"


SYSTEM = Actor("system")

_current: ContextVar[Actor] = ContextVar("actor", default=SYSTEM)


def current() -> Actor:
    return _current.get()


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Sets the actor for the code inside the block (and the tasks it starts)."""
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


def enter(actor: Actor) -> Token[Actor]:
    """For the edge, which sets the actor around a call it cannot wrap in a `with`."""
    return _current.set(actor)


def leave(token: Token[Actor]) -> None:
    _current.reset(token)
