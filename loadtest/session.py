"""What a Locust process of the load test keeps besides its users: the seeded sale it
draws campaigns and members from, the file every OK received goes to, and the client
interceptor that reports each call to Locust under its outcome's name."""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import grpc
from locust.env import Environment

from flashsale.audit import RecordedOk
from loadtest import outcomes
from loadtest.outcomes import Kind, Verdict
from loadtest.profiles import Profile, get
from loadtest.seed import Seed, SeededCampaign, SeededMember

log = logging.getLogger("surge.loadtest")

LOGGED_FAILURES = 20  # unexpected outcomes logged with their details, per process


class Sale:
    """What this process knows of the seeded sale: campaigns, members, the opening."""

    def __init__(self, seed: Seed) -> None:
        self.seed = seed
        self.profile: Profile = get(seed.profile)
        self._campaigns = list(seed.campaigns)
        self._weights = [c.weight for c in seed.campaigns]

    def until_open(self) -> float:
        return self.seed.opens_at - time.time()

    def is_open(self) -> bool:
        return self.until_open() <= 0

    def campaign(self) -> SeededCampaign:
        return random.choices(self._campaigns, self._weights)[0]

    def member(self) -> SeededMember:
        return random.choice(self.seed.members)


class Recorder:
    """Appends every OK this process receives to its own JSON-lines file, a line per write
    (line-buffered), so the file is complete even if Locust is stopped hard."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"ok-{socket.gethostname()}-{os.getpid()}.jsonl"
        self._file: IO[str] = self.path.open("a", buffering=1)

    def write(self, record: RecordedOk) -> None:
        self._file.write(json.dumps(asdict(record)) + "\n")

    def close(self) -> None:
        self._file.close()


class ReportingInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Times every unary call and reports it through `events.request` under its outcome's
    name; only unexpected outcomes count as Locust failures."""

    logged = 0  # unexpected outcomes logged with their details, per process

    def __init__(self, environment: Environment) -> None:
        self._events = environment.events

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        method = outcomes.method_name(client_call_details.method)
        started = time.perf_counter()
        call = continuation(client_call_details, request)
        exception: Exception | None = None
        length = 0
        try:
            response = call.result()
        except grpc.RpcError as error:
            verdict = outcomes.classify(method, *outcomes.error_reason(error))
            if verdict.kind is Kind.FAILURE:
                exception = outcomes.UnexpectedOutcome(verdict)
                self._log(verdict, error)
        else:
            verdict = outcomes.ok(method, replayed=bool(getattr(response, "replayed", False)))
            length = response.ByteSize()
        self._events.request.fire(  # type: ignore[no-untyped-call]
            request_type="grpc",
            name=verdict.name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            response=None,
            context={},
            exception=exception,
        )
        return call

    def _log(self, verdict: Verdict, error: grpc.RpcError) -> None:
        if ReportingInterceptor.logged < LOGGED_FAILURES:
            ReportingInterceptor.logged += 1
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            log.warning("unexpected %s %s: %s", verdict.name, verdict.label, details)
