"""Locust users for the holiday surge: gateway sessions on sync gRPC stubs under gevent.

Locust's documented gRPC pattern: `grpc.experimental.gevent.init_gevent()` so the sync stubs
yield to other users, and a client interceptor that reports every call through
`events.request` (named by outcome, see loadtest.outcomes). On top of it the users behave
like a gateway during a sale: they look at campaigns, redeem with fresh idempotency keys,
sometimes resend a key as a gateway does after a timeout, check balances, confirm points +
cash payments, and sometimes cancel. Transient errors are retried with the same key, which
is what makes "no lost OK, no double redemption" testable when the server is killed.

Every OK received is written to `--surge-records` (one JSON-lines file per process) for
`surge audit --recorded`. Run by `python -m loadtest.run`, or by hand:

    locust -f loadtest/locustfile.py --host 127.0.0.1:50051 --surge-seed seed.json
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from argparse import ArgumentParser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import LoadTestShape, User, events, task
from locust.env import Environment

from flashsale.audit import RecordedOk
from loadtest import credentials, outcomes
from loadtest.outcomes import Kind, Verdict
from loadtest.seed import load_seed
from loadtest.session import Recorder, ReportingInterceptor, Sale
from loyalty.v1 import (
    campaign_pb2,
    campaign_pb2_grpc,
    common_pb2,
    redemption_pb2,
    redemption_pb2_grpc,
)

# Must run before any channel exists: gRPC's sync calls then yield to gevent.
grpc_gevent.init_gevent()

log = logging.getLogger("surge.loadtest")

RPC_TIMEOUT_S = 5.0
CREDENTIAL = credentials.metadata()  # SURGE_TOKEN, set by loadtest.run for its own server
# A gateway retries transient errors with the same key for this long (covers a restart).
RETRY_BUDGET_S = 30.0
RETRY_ATTEMPTS = 60
RETRY_FIRST_S, RETRY_MAX_S = 0.1, 1.0
# Reconnect quickly once a killed server is back (gRPC's default backoff grows to 2 min).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
BROWSE_THINK_S = (0.5, 1.5)
EARLY_REDEEM_SHARE = 0.2  # of redeem tasks before the gate: jumping the gun
DOUBLE_QUANTITY_SHARE = 0.1
CONFIRM_SHARE = 0.85  # of points + cash redemptions; the rest expire unpaid
CANCEL_SHARE = 0.15
# Of redeems hit by a transient error: the gateway gives up instead of retrying, leaving a
# hold (or a commit nobody heard of) for the sweeper to settle.
ABANDON_SHARE = 0.25
ADDRESS = common_pb2.ShippingAddress(
    recipient="Mei Chen", line1="8 Century Avenue", city="Shanghai", postal_code="200120",
    country_code="CN",
)  # fmt: skip


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _options(parser: ArgumentParser, **_: Any) -> None:
    parser.add_argument(
        "--surge-seed",
        default="results/loadtest/seed.json",
        help="seed JSON from loadtest.seed (the path must exist on every worker)",
    )
    parser.add_argument(
        "--surge-records",
        default="results/loadtest/records",
        help="folder for the OKs received (one ok-HOST-PID.jsonl per process)",
    )
    parser.add_argument(
        "--surge-currency",
        default=os.environ.get("SURGE_CURRENCY") or "CNY",
        help="the mall's currency, as the server's SURGE_CURRENCY (default: that variable "
        "here, else CNY); ConfirmPayment pays in it",
    )


_sale: Sale | None = None
_recorder: Recorder | None = None


def sale_of(environment: Environment) -> Sale:
    global _sale
    if _sale is None:
        assert environment.parsed_options is not None
        _sale = Sale(load_seed(Path(environment.parsed_options.surge_seed)))
    return _sale


def recorder_of(environment: Environment) -> Recorder:
    global _recorder
    if _recorder is None:
        assert environment.parsed_options is not None
        _recorder = Recorder(Path(environment.parsed_options.surge_records))
    return _recorder


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _close_recorder(**_: Any) -> None:
    if _recorder is not None:
        _recorder.close()


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    response: Any = None


@dataclass(frozen=True)
class Owned:
    """A redemption this session got, kept for confirming, cancelling and recording."""

    redemption_id: str
    member_id: str
    key: str
    campaign_id: str
    quantity: int


class CheckFailed(Exception):
    """A client-side consistency check failed (reported as a Locust failure)."""


class Shopper(User):
    """One gateway session during the sale. Before the opening it browses (and now and
    then jumps the gun); within `gate_s` of the opening every task waits at the start gate,
    so all users present hit the sale in the same instant."""

    def wait_time(self) -> float:
        low, high = self.sale.profile.think_s if self.sale.is_open() else BROWSE_THINK_S
        return random.uniform(low, high)

    def on_start(self) -> None:
        self.sale = sale_of(self.environment)
        self.recorder = recorder_of(self.environment)
        assert self.environment.parsed_options is not None
        self.currency: str = self.environment.parsed_options.surge_currency
        assert self.host, "pass --host 127.0.0.1:PORT"
        self._channel = grpc.insecure_channel(self.host, options=CHANNEL_OPTIONS)
        channel = grpc.intercept_channel(self._channel, ReportingInterceptor(self.environment))
        self.gateway = redemption_pb2_grpc.RedemptionServiceStub(channel)
        self.campaigns = campaign_pb2_grpc.CampaignServiceStub(channel)
        self.owned: list[Owned] = []
        self.last: tuple[redemption_pb2.RedeemRequest, Result] | None = None

    def on_stop(self) -> None:
        self._channel.close()

    # -- Tasks ---------------------------------------------------------------------------

    @task(3)
    def look_at_campaign(self) -> None:
        self._start_gate()
        seeded = self.sale.campaign()
        result = self._call(
            self.campaigns.GetCampaign,
            "GetCampaign",
            campaign_pb2.GetCampaignRequest(campaign_id=seeded.id),
        )
        c = result.response
        if c is not None and (
            c.units_remaining < 0 or c.units_committed + c.units_held > c.units_allotted
        ):
            self._check_failed(
                "GetCampaign counters",
                f"allotted {c.units_allotted}, committed {c.units_committed}, "
                f"held {c.units_held}, remaining {c.units_remaining}",
            )

    @task(8)
    def redeem(self) -> None:
        before_gate = self.sale.until_open() > self.sale.profile.gate_s
        if before_gate and random.random() >= EARLY_REDEEM_SHARE:
            self.look_at_campaign()  # quiet browsing; the others jump the gun
            return
        self._start_gate()
        seeded, member = self.sale.campaign(), self.sale.member()
        request = redemption_pb2.RedeemRequest(
            member_id=member.id,
            campaign_id=seeded.id,
            quantity=2 if random.random() < DOUBLE_QUANTITY_SHARE else 1,
            idempotency_key="lt-" + uuid.uuid4().hex,
            shipping_address=ADDRESS if seeded.kind == "PHYSICAL" else None,
        )
        patient = random.random() >= ABANDON_SHARE
        result = self._call(self.gateway.Redeem, "Redeem", request, retry=patient)
        self.last = (request, result)
        self._took(request, result)

    @task(1)
    def resend_same_key(self) -> None:
        """A gateway that timed out resends the request with the same key: it must get the
        first answer again (the same redemption, or the same saved refusal)."""
        if self.last is None:
            return
        self._start_gate()
        request, first = self.last
        again = self._call(self.gateway.Redeem, "Redeem", request)
        problem = outcomes.replay_problem(
            first.verdict, _redemption_id(first), again.verdict, _redemption_id(again)
        )
        if problem:
            self._check_failed("Redeem replay", f"key {request.idempotency_key}: {problem}")
        if first.verdict.kind is not Kind.OK:
            self.last = (request, again)
            self._took(request, again)
        elif again.response is not None:
            self._record(again.response.redemption, request.idempotency_key)

    @task(2)
    def check_balance(self) -> None:
        self._start_gate()
        member = self.sale.member()
        result = self._call(
            self.gateway.GetBalance,
            "GetBalance",
            redemption_pb2.RedemptionServiceGetBalanceRequest(member_id=member.id),
        )
        b = result.response
        if b is not None and (b.available < 0 or b.held < 0 or b.available != b.balance - b.held):
            self._check_failed(
                "GetBalance", f"balance {b.balance}, held {b.held}, available {b.available}"
            )

    @task(1)
    def cancel(self) -> None:
        if not self.owned or random.random() >= CANCEL_SHARE:
            return
        owned = self.owned.pop(random.randrange(len(self.owned)))
        result = self._call(
            self.gateway.CancelRedemption,
            "CancelRedemption",
            redemption_pb2.CancelRedemptionRequest(
                redemption_id=owned.redemption_id,
                member_id=owned.member_id,
                reason="load test: changed my mind",
            ),
        )
        if result.response is not None:
            self._record(result.response, owned.key)

    # -- Steps ---------------------------------------------------------------------------

    def _start_gate(self) -> None:
        """Within gate_s of the opening, wait for it: the whole crowd goes at once."""
        wait = self.sale.until_open()
        if 0 < wait <= self.sale.profile.gate_s:
            gevent.sleep(wait + 0.01)

    def _took(self, request: redemption_pb2.RedeemRequest, result: Result) -> None:
        """After an OK Redeem: record it, keep it, confirm payment when one is due."""
        if result.response is None:
            return
        r = result.response.redemption
        self._record(r, request.idempotency_key)
        if (r.member_id, r.campaign_id, r.quantity) != (
            request.member_id,
            request.campaign_id,
            request.quantity,
        ):
            self._check_failed("Redeem answer", f"redemption {r.id} is not the one requested")
        owned = Owned(r.id, r.member_id, request.idempotency_key, r.campaign_id, r.quantity)
        code = r.redemption_code
        if r.status == redemption_pb2.REDEMPTION_STATUS_PENDING_PAYMENT:
            if random.random() >= CONFIRM_SHARE:
                return  # abandoned: expires after the payment window
            confirmed = self._call(
                self.gateway.ConfirmPayment,
                "ConfirmPayment",
                redemption_pb2.ConfirmPaymentRequest(
                    redemption_id=r.id,
                    member_id=r.member_id,
                    payment_reference="pay-" + request.idempotency_key,
                    amount_cents=r.cash_total_cents,
                    currency=self.currency,
                ),
            )
            if confirmed.response is None:
                return
            self._record(confirmed.response, request.idempotency_key)
            code = confirmed.response.redemption_code
        if not code:  # a virtual good whose code is issued is final: never cancelled
            self.owned.append(owned)

    def _record(self, r: redemption_pb2.Redemption, key: str) -> None:
        status = redemption_pb2.RedemptionStatus.Name(r.status).removeprefix("REDEMPTION_STATUS_")
        self.recorder.write(
            RecordedOk(
                redemption_id=r.id,
                member_id=r.member_id,
                idempotency_key=r.idempotency_key or key,
                status=status,
                campaign_id=r.campaign_id,
                quantity=r.quantity,
            )
        )

    def _call(
        self, rpc: Callable[..., Any], method: str, request: Any, *, retry: bool = True
    ) -> Result:
        """One call as a gateway makes it: transient errors are retried with the same
        request (so the same idempotency key), bounded in attempts and time; without
        `retry` the first transient error is the answer (a gateway that gave up)."""
        deadline = time.monotonic() + RETRY_BUDGET_S
        delay = RETRY_FIRST_S
        metadata = (("x-request-id", "lt-" + uuid.uuid4().hex), *CREDENTIAL)
        verdict = Verdict(Kind.TRANSIENT, method, "UNAVAILABLE")
        for _ in range(RETRY_ATTEMPTS):
            try:
                response = rpc(request, timeout=RPC_TIMEOUT_S, metadata=metadata)
            except grpc.RpcError as error:
                verdict = outcomes.classify(method, *outcomes.error_reason(error))
                if verdict.kind is not Kind.TRANSIENT or not retry:
                    return Result(verdict)
            else:
                replayed = bool(getattr(response, "replayed", False))
                return Result(outcomes.ok(method, replayed=replayed), response)
            if time.monotonic() + delay > deadline:
                break
            gevent.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, RETRY_MAX_S)
        self._check_failed(f"{method} gave up", f"still {verdict.label} after {RETRY_BUDGET_S}s")
        return Result(verdict)

    def _check_failed(self, name: str, message: str) -> None:
        log.warning("check failed: %s: %s", name, message)
        self.environment.events.request.fire(
            request_type="check",
            name=name,
            response_time=0,
            response_length=0,
            response=None,
            context={},
            exception=CheckFailed(message),
        )


def _redemption_id(result: Result) -> str:
    return str(result.response.redemption.id) if result.response is not None else ""


class SurgeShape(LoadTestShape):
    """Quiet browsing, the start gate, a spike, a plateau and a tail, anchored to the sale's
    wall-clock opening (see loadtest.profiles). Runs on the master in distributed mode."""

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        sale = sale_of(self.runner.environment)
        return sale.profile.tick(-sale.until_open())
