"""How the load test names and counts the result of one gRPC call.

A flash sale refuses far more requests than it serves, and those refusals are the service
working, not failing. So every call is sorted into one of four kinds:

- OK: reported under the method's name (a replayed Redeem as `Redeem:replayed`);
- REFUSAL: a business "no" the sale is expected to give (`Redeem:SOLD_OUT`), a success
  for Locust under its own name, so the report counts refusals by reason;
- TRANSIENT: UNAVAILABLE / ABORTED / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED, which a
  gateway retries with the same idempotency key (the chaos run provokes them, an overloaded
  server sheds with the last); reported as `Redeem:transient-CODE`, not a failure, so the
  report shows how many retries the kill caused;
- FAILURE: anything else (INTERNAL, an unexpected reason): a Locust failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class Kind(StrEnum):
    OK = "ok"
    REFUSAL = "refusal"
    TRANSIENT = "transient"
    FAILURE = "failure"


# Business refusals each method may give during a healthy sale.
EXPECTED_REFUSALS: dict[str, frozenset[str]] = {
    "Redeem": frozenset(
        {"SOLD_OUT", "LIMIT_EXCEEDED", "INSUFFICIENT_POINTS", "CAMPAIGN_NOT_ACTIVE"}
    ),
    # A confirmation retried across a server restart may arrive after the payment window.
    "ConfirmPayment": frozenset({"PAYMENT_WINDOW_CLOSED"}),
    # A points + cash redemption may expire before its owner gets round to cancelling it.
    "CancelRedemption": frozenset({"REDEMPTION_NOT_CANCELLABLE"}),
    # The lottery profile (loadtest/lottery.py): members draw until their points or limits
    # run out.
    "Draw": frozenset({"LIMIT_EXCEEDED", "INSUFFICIENT_POINTS", "LOTTERY_NOT_ACTIVE"}),
}

# Refusals Redeem remembers per key: a retry with the same key must get the same one.
SAVED_REFUSALS = frozenset({"SOLD_OUT", "LIMIT_EXCEEDED", "INSUFFICIENT_POINTS", "MEMBER_FROZEN"})

TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # shed by an overloaded server: retry shortly
    }
)

TRANSIENT_PREFIX = "transient-"


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    name: str  # the request name Locust reports
    code: str = "OK"
    reason: str = ""

    @property
    def label(self) -> str:
        """What happened, in one word: OK, the refusal reason, or the status code."""
        return self.reason or self.code


def method_name(full_method: str | bytes) -> str:
    """'/loyalty.v1.RedemptionService/Redeem' -> 'Redeem'."""
    text = full_method.decode() if isinstance(full_method, bytes) else full_method
    return text.rsplit("/", 1)[-1]


def ok(method: str, *, replayed: bool = False) -> Verdict:
    return Verdict(Kind.OK, f"{method}:replayed" if replayed else method)


def classify(method: str, code: grpc.StatusCode, reason: str) -> Verdict:
    """Sorts a failed call by its status code and google.rpc.ErrorInfo reason."""
    if code is grpc.StatusCode.FAILED_PRECONDITION and reason in EXPECTED_REFUSALS.get(
        method, frozenset()
    ):
        return Verdict(Kind.REFUSAL, f"{method}:{reason}", code.name, reason)
    if code in TRANSIENT_CODES:
        return Verdict(Kind.TRANSIENT, f"{method}:{TRANSIENT_PREFIX}{code.name}", code.name, reason)
    return Verdict(Kind.FAILURE, method, code.name, reason)


def error_reason(error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """The status code and ErrorInfo reason of a failed sync call ('' when it has none)."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    if not isinstance(error, grpc.Call):
        return code, ""
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # details disagree with the call's status: no reason to trust
        return code, ""
    if status is None:
        return code, ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return code, str(info.reason)
    return code, ""


class UnexpectedOutcome(Exception):
    """Raised into Locust's failure report: the message names the code and reason."""

    def __init__(self, verdict: Verdict, details: str = "") -> None:
        text = f"{verdict.code}" + (f" {verdict.reason}" if verdict.reason else "")
        super().__init__(f"{text}: {details}" if details else text)
        self.verdict = verdict


def replay_problem(first: Verdict, first_id: str, again: Verdict, again_id: str) -> str:
    """What is wrong with the answer to a resent request ('' if nothing), given the first
    answer. The same key must give the same redemption, or the same saved refusal; an
    answer that never arrived (transient) proves nothing either way."""
    if again.kind is Kind.TRANSIENT:
        return ""
    if first.kind is Kind.OK:
        if again.kind is not Kind.OK:
            return f"first answer was redemption {first_id}, the resend got {again.label}"
        if again_id != first_id:
            return f"first answer was redemption {first_id}, the resend got {again_id}"
        if not again.name.endswith(":replayed"):
            return f"the resend of redemption {first_id} was not marked replayed"
        return ""
    if first.kind is Kind.REFUSAL and first.reason in SAVED_REFUSALS and again.label != first.label:
        return f"first answer was {first.label}, the resend got {again.label}"
    return ""
