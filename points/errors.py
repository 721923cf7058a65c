"""The points ledger's own errors: subclasses of common.errors, so the gRPC edge maps them
as it maps their parents (server/errors.py).

InvalidArgument
└── UnknownTaskRule(rule)                     field "rule"
NotFound
└── PurchaseNotFound(member_id, event_id)
Refusal
├── NotABeneficiary(member_id, beneficiary_id)
├── TooManyBeneficiaries(member_id, limit)
├── TaskCapReached(rule, cap)
├── PurchaseFullyReversed(event_id)
└── AlreadyCheckedIn(member_id, day)          a second daily check-in, another key
"""

from __future__ import annotations

from common.errors import InvalidArgument, NotFound, Refusal


class UnknownTaskRule(InvalidArgument):
    def __init__(self, rule: str, known: list[str]) -> None:
        super().__init__("rule", f"unknown task rule {rule!r}; known: {', '.join(known) or 'none'}")
        self.rule = rule


class PurchaseNotFound(NotFound):
    def __init__(self, member_id: str, event_id: str) -> None:
        super().__init__("purchase", event_id)
        self.member_id = member_id


class NotABeneficiary(Refusal):
    reason = "NOT_A_BENEFICIARY"

    def __init__(self, member_id: str, beneficiary_id: str) -> None:
        super().__init__(f"member {beneficiary_id} is not a beneficiary of member {member_id}")
        self.member_id, self.beneficiary_id = member_id, beneficiary_id

    def metadata(self) -> dict[str, str]:
        return {"member_id": self.member_id, "beneficiary_id": self.beneficiary_id}


class TooManyBeneficiaries(Refusal):
    reason = "TOO_MANY_BENEFICIARIES"

    def __init__(self, member_id: str, limit: int) -> None:
        super().__init__(f"member {member_id} already has {limit} beneficiaries, the most allowed")
        self.member_id, self.limit = member_id, limit

    def metadata(self) -> dict[str, str]:
        return {"member_id": self.member_id, "max_beneficiaries": str(self.limit)}


class TaskCapReached(Refusal):
    reason = "TASK_CAP_REACHED"

    def __init__(self, rule: str, cap: int) -> None:
        super().__init__(f"task {rule!r} pays at most {cap} times per member")
        self.rule, self.cap = rule, cap

    def metadata(self) -> dict[str, str]:
        return {"rule": self.rule, "cap": str(self.cap)}


class PurchaseFullyReversed(Refusal):
    reason = "PURCHASE_FULLY_REVERSED"

    def __init__(self, event_id: str) -> None:
        super().__init__(f"purchase {event_id!r} has been reversed in full already")
        self.event_id = event_id

    def metadata(self) -> dict[str, str]:
        return {"purchase_event_id": self.event_id}


class AlreadyCheckedIn(Refusal):
    """The member has checked in on this local day under another idempotency key (the
    same key is a replay, not a refusal)."""

    reason = "ALREADY_CHECKED_IN"

    def __init__(self, member_id: str, day: str) -> None:
        super().__init__(f"member {member_id} has already checked in on {day}")
        self.member_id, self.day = member_id, day

    def metadata(self) -> dict[str, str]:
        return {"member_id": self.member_id, "day": self.day}
