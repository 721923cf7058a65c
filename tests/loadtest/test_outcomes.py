"""How the load test sorts answers: expected refusals and transient errors are not failures,
and a resent key must get its first answer again."""

from __future__ import annotations

import grpc

from loadtest.outcomes import Kind, classify, method_name, ok, replay_problem

FP = grpc.StatusCode.FAILED_PRECONDITION


def test_expected_refusals_are_named_by_reason_and_are_not_failures() -> None:
    for reason in ("SOLD_OUT", "LIMIT_EXCEEDED", "INSUFFICIENT_POINTS", "CAMPAIGN_NOT_ACTIVE"):
        verdict = classify("Redeem", FP, reason)
        assert (verdict.kind, verdict.name) == (Kind.REFUSAL, f"Redeem:{reason}")


def test_a_refusal_another_method_may_not_give_is_a_failure() -> None:
    assert classify("Redeem", FP, "MEMBER_FROZEN").kind is Kind.FAILURE
    assert classify("GetBalance", FP, "SOLD_OUT").kind is Kind.FAILURE
    assert classify("ConfirmPayment", FP, "PAYMENT_WINDOW_CLOSED").kind is Kind.REFUSAL


def test_transient_codes_are_counted_apart_and_everything_else_fails() -> None:
    for code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ):
        verdict = classify("Redeem", code, "")
        assert (verdict.kind, verdict.name) == (Kind.TRANSIENT, f"Redeem:transient-{code.name}")
    internal = classify("Redeem", grpc.StatusCode.INTERNAL, "")
    assert (internal.kind, internal.name, internal.label) == (Kind.FAILURE, "Redeem", "INTERNAL")
    assert classify("Redeem", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT").kind is (
        Kind.FAILURE
    )


def test_ok_names_and_method_names() -> None:
    assert ok("Redeem").name == "Redeem"
    assert ok("Redeem", replayed=True).name == "Redeem:replayed"
    assert method_name("/loyalty.v1.RedemptionService/Redeem") == "Redeem"
    assert method_name(b"/loyalty.v1.RedemptionService/GetBalance") == "GetBalance"


def test_a_resent_key_must_get_the_same_redemption_replayed() -> None:
    first = ok("Redeem")
    assert replay_problem(first, "r1", ok("Redeem", replayed=True), "r1") == ""
    assert "r2" in replay_problem(first, "r1", ok("Redeem", replayed=True), "r2")
    assert "not marked replayed" in replay_problem(first, "r1", ok("Redeem"), "r1")
    assert "SOLD_OUT" in replay_problem(first, "r1", classify("Redeem", FP, "SOLD_OUT"), "")
    unreachable = classify("Redeem", grpc.StatusCode.UNAVAILABLE, "")
    assert replay_problem(first, "r1", unreachable, "") == ""


def test_a_saved_refusal_must_be_replayed_but_not_active_may_change() -> None:
    sold_out = classify("Redeem", FP, "SOLD_OUT")
    assert replay_problem(sold_out, "", sold_out, "") == ""
    assert replay_problem(sold_out, "", ok("Redeem"), "r1") != ""
    not_active = classify("Redeem", FP, "CAMPAIGN_NOT_ACTIVE")
    assert replay_problem(not_active, "", ok("Redeem"), "r1") == ""
