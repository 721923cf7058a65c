"""Domain errors. They carry data; the gRPC edge alone turns them into status codes.

DomainError
├── InvalidArgument(field, message)          malformed request, names the field
├── NotFound(resource, resource_id)
├── AlreadyExists(resource, field, value, existing_id)   a unique value taken (e.g. a SKU)
│   └── RequestIdReused(resource, request_id, existing_id)   a create's request id
│                                              used for a different request (AIP-155)
├── IdempotencyKeyReused(key)                 same key, different request
├── RequestInProgress(key)                    same key, first call still running (retryable)
├── HoldExpired(key)                          the hold lapsed before the commit (retryable)
├── Unavailable(dependency)                   Redis or PostgreSQL unreachable (retryable)
├── Overloaded(limit)                         too many calls in flight here (retryable)
├── CommitQueueFull(limit)                    redemptions waiting for PostgreSQL (retryable)
└── Refusal                                   a business rule said no
    ├── SoldOut(campaign_id, remaining)
    ├── InsufficientPoints(member_id, available, required)
    ├── LimitExceeded(campaign_id, limit, taken)
    ├── CampaignNotActive(campaign_id, starts_at, ends_at)
    ├── MemberFrozen(member_id)
    ├── InsufficientStock(item_id, on_hand, requested)
    ├── CampaignEnded(campaign_id, ends_at)   an operator change to a sale that is over
    ├── AllotmentBelowTaken(campaign_id, taken, requested)
    ├── LimitBelowTaken(campaign_id, taken, requested)
    ├── NotCancellable(redemption_id, status)
    ├── PaymentNotPending(redemption_id, status)
    ├── PaymentWindowClosed(redemption_id)
    ├── PaymentMismatch(redemption_id, amount_cents, currency)
    ├── InvalidTransition(redemption_id, status, transition)   a fulfilment step out of order
    ├── ReturnWindowClosed(redemption_id, closed_at)
    └── BelowRedemptionThreshold(member_id, threshold)

A domain's own errors live with it, as subclasses of these (points/errors.py), and so do
the edge's (server/edge_errors.py: credentials, scopes, rates, deadlines).

Every error has an UPPER_SNAKE `reason` and `metadata()` of strings, which become a
google.rpc.ErrorInfo at the edge. Messages never contain exception text from a driver.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    reason: ClassVar[str] = "DOMAIN_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def metadata(self) -> dict[str, str]:
        return {}


class InvalidArgument(DomainError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.description = message

    def metadata(self) -> dict[str, str]:
        return {"field": self.field}


class NotFound(DomainError):
    reason = "NOT_FOUND"

    def __init__(self, resource: str, resource_id: str, *, by: str = "") -> None:
        # by: the field looked up when it is not the resource's id (e.g. external_ref).
        named = f"with {by} {resource_id!r}" if by else resource_id
        super().__init__(f"{resource} {named} not found")
        self.resource = resource
        self.resource_id = resource_id
        self.by = by

    def metadata(self) -> dict[str, str]:
        data = {"resource": self.resource, "id": self.resource_id}
        if self.by:
            data["field"] = self.by
        return data


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"

    def __init__(self, resource: str, field: str, value: str, existing_id: str = "") -> None:
        # Naming the existing resource lets a caller whose first reply was lost carry on
        # with it (metadata "<resource>_id").
        named = f": {resource} {existing_id}" if existing_id else ""
        super().__init__(f"a {resource} with {field} {value!r} already exists{named}")
        self.resource, self.field, self.value = resource, field, value
        self.existing_id = existing_id

    def metadata(self) -> dict[str, str]:
        data = {"resource": self.resource, "field": self.field}
        if self.existing_id:
            data[f"{self.resource}_id"] = self.existing_id
        return data


class IdempotencyKeyReused(DomainError):
    reason = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} was already used for a different request")
        self.key = key

    def metadata(self) -> dict[str, str]:
        return {"idempotency_key": self.key}


class RequestInProgress(DomainError):
    reason = "REQUEST_IN_PROGRESS"

    def __init__(self, key: str) -> None:
        super().__init__(f"a request with idempotency key {key!r} is in progress; retry")
        self.key = key

    def metadata(self) -> dict[str, str]:
        return {"idempotency_key": self.key}


class HoldExpired(DomainError):
    reason = "HOLD_EXPIRED"

    def __init__(self, key: str) -> None:
        super().__init__(f"the hold for idempotency key {key!r} lapsed before commit; retry")
        self.key = key

    def metadata(self) -> dict[str, str]:
        return {"idempotency_key": self.key}


class Unavailable(DomainError):
    reason = "DEPENDENCY_UNAVAILABLE"

    def __init__(self, dependency: str) -> None:
        super().__init__(f"{dependency} is unavailable; retry with the same idempotency key")
        self.dependency = dependency

    def metadata(self) -> dict[str, str]:
        return {"dependency": self.dependency}


class Overloaded(DomainError):
    """This process has as many calls in flight as it takes; nothing was started."""

    reason = "OVERLOADED"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the server has {limit} calls in flight; retry shortly")
        self.limit = limit

    def metadata(self) -> dict[str, str]:
        return {"max_concurrent_calls": str(self.limit)}


class Refusal(DomainError):
    """A business rule refused the request; nothing changed."""

    reason = "REFUSED"


class SoldOut(Refusal):
    reason = "SOLD_OUT"

    def __init__(self, campaign_id: str, remaining: int) -> None:
        super().__init__(f"campaign {campaign_id} has {remaining} units left")
        self.campaign_id, self.remaining = campaign_id, remaining

    def metadata(self) -> dict[str, str]:
        return {"campaign_id": self.campaign_id, "units_remaining": str(self.remaining)}


class InsufficientPoints(Refusal):
    reason = "INSUFFICIENT_POINTS"

    def __init__(self, member_id: str, available: int, required: int) -> None:
        super().__init__(f"member has {available} points available, {required} required")
        self.member_id, self.available, self.required = member_id, available, required

    def metadata(self) -> dict[str, str]:
        return {"available": str(self.available), "required": str(self.required)}


class LimitExceeded(Refusal):
    reason = "LIMIT_EXCEEDED"

    def __init__(self, campaign_id: str, limit: int, taken: int) -> None:
        super().__init__(f"per-member limit is {limit} units; member already has {taken}")
        self.campaign_id, self.limit, self.taken = campaign_id, limit, taken

    def metadata(self) -> dict[str, str]:
        return {
            "campaign_id": self.campaign_id,
            "per_member_limit": str(self.limit),
            "units_taken": str(self.taken),
        }


class CampaignNotActive(Refusal):
    reason = "CAMPAIGN_NOT_ACTIVE"

    def __init__(self, campaign_id: str, starts_at: str, ends_at: str) -> None:
        super().__init__(f"campaign {campaign_id} runs from {starts_at} to {ends_at}")
        self.campaign_id, self.starts_at, self.ends_at = campaign_id, starts_at, ends_at

    def metadata(self) -> dict[str, str]:
        return {
            "campaign_id": self.campaign_id,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
        }


class MemberFrozen(Refusal):
    reason = "MEMBER_FROZEN"

    def __init__(self, member_id: str) -> None:
        super().__init__(f"member {member_id} is frozen")
        self.member_id = member_id

    def metadata(self) -> dict[str, str]:
        return {"member_id": self.member_id}


class InsufficientStock(Refusal):
    reason = "INSUFFICIENT_STOCK"

    def __init__(self, item_id: str, on_hand: int, requested: int) -> None:
        super().__init__(f"item {item_id} has {on_hand} units on hand, {requested} requested")
        self.item_id, self.on_hand, self.requested = item_id, on_hand, requested

    def metadata(self) -> dict[str, str]:
        return {"item_id": self.item_id, "stock_on_hand": str(self.on_hand)}


class CampaignEnded(Refusal):
    """An update to a campaign whose sale is over (its window passed, or EndCampaign)."""

    reason = "CAMPAIGN_ENDED"

    def __init__(self, campaign_id: str, ends_at: str) -> None:
        super().__init__(f"campaign {campaign_id} ended at {ends_at}: it cannot be changed")
        self.campaign_id, self.ends_at = campaign_id, ends_at

    def metadata(self) -> dict[str, str]:
        return {"campaign_id": self.campaign_id, "ends_at": self.ends_at}


class AllotmentBelowTaken(Refusal):
    """units_allotted cut below the units already committed or held in PostgreSQL."""

    reason = "ALLOTMENT_BELOW_TAKEN"

    def __init__(self, campaign_id: str, taken: int, requested: int) -> None:
        super().__init__(
            f"campaign {campaign_id} has {taken} units committed or held; "
            f"units_allotted {requested} is below that"
        )
        self.campaign_id, self.taken, self.requested = campaign_id, taken, requested

    def metadata(self) -> dict[str, str]:
        return {"campaign_id": self.campaign_id, "units_taken": str(self.taken)}


class LotteryPrizeCampaign(Refusal):
    """The campaign holds a lottery's prize: its lottery manages it (lottery/prizes.py)."""

    reason = "LOTTERY_PRIZE_CAMPAIGN"

    def __init__(self, campaign_id: str) -> None:
        super().__init__(
            f"campaign {campaign_id} holds a lottery's prize: it is changed by its lottery, "
            "and ends with it"
        )
        self.campaign_id = campaign_id

    def metadata(self) -> dict[str, str]:
        return {"campaign_id": self.campaign_id}


class LimitBelowTaken(Refusal):
    """per_member_limit cut below the units a member already took (invariant 3)."""

    reason = "LIMIT_BELOW_TAKEN"

    def __init__(self, campaign_id: str, taken: int, requested: int) -> None:
        super().__init__(
            f"a member of campaign {campaign_id} took {taken} units; "
            f"per_member_limit {requested} is below that"
        )
        self.campaign_id, self.taken, self.requested = campaign_id, taken, requested

    def metadata(self) -> dict[str, str]:
        return {"campaign_id": self.campaign_id, "units_taken": str(self.taken)}


class NotCancellable(Refusal):
    reason = "REDEMPTION_NOT_CANCELLABLE"

    def __init__(self, redemption_id: str, status: str, because: str = "") -> None:
        why = f": {because}" if because else ""
        super().__init__(f"redemption {redemption_id} is {status} and cannot be cancelled{why}")
        self.redemption_id, self.status, self.because = redemption_id, status, because

    def metadata(self) -> dict[str, str]:
        found = {"redemption_id": self.redemption_id, "status": self.status}
        return found | ({"because": self.because} if self.because else {})


class PaymentNotPending(Refusal):
    reason = "PAYMENT_NOT_PENDING"

    def __init__(self, redemption_id: str, status: str) -> None:
        super().__init__(f"redemption {redemption_id} is {status}, not waiting for payment")
        self.redemption_id, self.status = redemption_id, status

    def metadata(self) -> dict[str, str]:
        return {"redemption_id": self.redemption_id, "status": self.status}


class PaymentWindowClosed(Refusal):
    reason = "PAYMENT_WINDOW_CLOSED"

    def __init__(self, redemption_id: str) -> None:
        super().__init__(f"the payment window of redemption {redemption_id} has closed")
        self.redemption_id = redemption_id

    def metadata(self) -> dict[str, str]:
        return {"redemption_id": self.redemption_id}


class PaymentMismatch(Refusal):
    """The payment's amount or currency is not the redemption's price. The metadata gives
    the price: the caller owns the redemption, so it learns nothing it may not know."""

    reason = "PAYMENT_MISMATCH"

    def __init__(self, redemption_id: str, amount_cents: int, currency: str) -> None:
        super().__init__(
            f"redemption {redemption_id} is paid with {amount_cents} cents in {currency}"
        )
        self.redemption_id, self.amount_cents, self.currency = redemption_id, amount_cents, currency

    def metadata(self) -> dict[str, str]:
        return {
            "redemption_id": self.redemption_id,
            "amount_cents": str(self.amount_cents),
            "currency": self.currency,
        }


class InvalidTransition(Refusal):
    """A fulfilment step (flashsale/fulfilment.py) from a state that does not lead to it, or
    a repeat of one that happened with other arguments. The metadata names the current state."""

    reason = "INVALID_TRANSITION"

    def __init__(self, redemption_id: str, status: str, transition: str, because: str = "") -> None:
        why = f": {because}" if because else ""
        super().__init__(
            f"redemption {redemption_id} is {status}: {transition} is not allowed{why}"
        )
        self.redemption_id, self.status, self.transition = redemption_id, status, transition
        self.because = because

    def metadata(self) -> dict[str, str]:
        found = {
            "redemption_id": self.redemption_id,
            "status": self.status,
            "transition": self.transition,
        }
        return found | ({"because": self.because} if self.because else {})


class ReturnWindowClosed(Refusal):
    reason = "RETURN_WINDOW_CLOSED"

    def __init__(self, redemption_id: str, closed_at: str) -> None:
        super().__init__(f"the return window of redemption {redemption_id} closed at {closed_at}")
        self.redemption_id, self.closed_at = redemption_id, closed_at

    def metadata(self) -> dict[str, str]:
        return {"redemption_id": self.redemption_id, "closed_at": self.closed_at}


class BelowRedemptionThreshold(Refusal):
    reason = "BELOW_REDEMPTION_THRESHOLD"

    def __init__(self, member_id: str, threshold: int | None = None) -> None:
        needed = f"{threshold} lifetime points" if threshold is not None else "more lifetime points"
        super().__init__(f"member {member_id} needs {needed} before redeeming")
        self.member_id, self.threshold = member_id, threshold

    def metadata(self) -> dict[str, str]:
        data = {"member_id": self.member_id}
        if self.threshold is not None:
            data["threshold"] = str(self.threshold)
        return data


class CommitQueueFull(DomainError):
    """As many redemptions as the group commit takes are already waiting for PostgreSQL;
    this one was refused before it held anything."""

    reason = "COMMIT_QUEUE_FULL"

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} redemptions are waiting to commit; retry shortly")
        self.limit = limit

    def metadata(self) -> dict[str, str]:
        return {"commit_queue_max": str(self.limit)}


class RequestIdReused(AlreadyExists):
    """A create's request_id (AIP-155) already made a resource, for a different request."""

    reason = "REQUEST_ID_REUSED"

    def __init__(self, resource: str, request_id: str, existing_id: str) -> None:
        DomainError.__init__(
            self,
            f"request_id {request_id!r} already created {resource} {existing_id} "
            "for a different request",
        )
        self.resource, self.field, self.value = resource, "request_id", request_id
        self.existing_id = existing_id

    def metadata(self) -> dict[str, str]:
        return super().metadata() | {"request_id": self.value}
