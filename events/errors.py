"""The event stream's own errors: subclasses of common.errors, mapped by server/errors.py as
their parents are.

Refusal
└── EventsPruned(after_sequence, oldest_sequence)   FAILED_PRECONDITION, EVENTS_PRUNED
Unavailable
└── StreamStopping                                  UNAVAILABLE: resume elsewhere
"""

from __future__ import annotations

from common.errors import DomainError, Refusal, Unavailable


class EventsPruned(Refusal):
    """The consumer asked to resume before the oldest event retention kept: resuming would
    skip events it never saw, so it must resynchronise (docs/events.md) and start again at
    oldest_sequence - 1 or later."""

    reason = "EVENTS_PRUNED"

    def __init__(self, after_sequence: int, oldest_sequence: int) -> None:
        super().__init__(
            f"after_sequence {after_sequence} is older than retention: the oldest event "
            f"kept is {oldest_sequence}"
        )
        self.after_sequence, self.oldest_sequence = after_sequence, oldest_sequence

    def metadata(self) -> dict[str, str]:
        return {
            "after_sequence": str(self.after_sequence),
            "oldest_sequence": str(self.oldest_sequence),
        }


class StreamStopping(Unavailable):
    """The serving process is stopping: the consumer resumes from its last sequence."""

    def __init__(self) -> None:
        DomainError.__init__(
            self, "the server is stopping; resume from your last sequence (on another server)"
        )
        self.dependency = "server"
