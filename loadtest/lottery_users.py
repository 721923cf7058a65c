"""Locust users for the lottery profile (loadtest/lottery.py): thousands of members draw
from one lottery with few prizes. Each user is a gateway session: it draws with a fresh
idempotency key, retries transient errors with the same key (what makes "no lost OK, no
prize twice" testable across a server kill), and now and then resends a key that got an
answer, which must give the same draw and the same prize.

Every OK is appended to --lottery-records (one JSON-lines file per process) for the audit.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
import uuid
from argparse import ArgumentParser
from pathlib import Path
from typing import IO, Any

import gevent
import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User, events, task

from loadtest import credentials, outcomes
from loadtest.outcomes import Kind
from loadtest.session import ReportingInterceptor
from loyalty.v1 import lottery_pb2, lottery_pb2_grpc

# Must run before any channel exists: gRPC's sync calls then yield to gevent.
grpc_gevent.init_gevent()

log = logging.getLogger("surge.loadtest.lottery")
RPC_TIMEOUT_S = 5.0
RETRY_BUDGET_S = 30.0
CREDENTIAL = credentials.metadata()
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _options(parser: ArgumentParser, **_: Any) -> None:
    parser.add_argument("--lottery-seed", default="results/loadtest/lottery-seed.json")
    parser.add_argument("--lottery-records", default="results/loadtest/lottery-records")


_seed: dict[str, Any] | None = None
_records: IO[str] | None = None


def _setup(options: Any) -> tuple[dict[str, Any], IO[str]]:
    global _seed, _records
    if _seed is None:
        _seed = json.loads(Path(options.lottery_seed).read_text())
    if _records is None:
        folder = Path(options.lottery_records)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"ok-{socket.gethostname()}-{os.getpid()}.jsonl"
        _records = path.open("a", buffering=1)
    return _seed, _records


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _close(**_: Any) -> None:
    if _records is not None:
        _records.close()


class CheckFailed(Exception):
    """A client-side consistency check failed (reported as a Locust failure)."""


class Drawer(User):
    def wait_time(self) -> float:
        return random.uniform(0.02, 0.15)

    def on_start(self) -> None:
        assert self.environment.parsed_options is not None
        self.seed, self.records = _setup(self.environment.parsed_options)
        assert self.host, "pass --host 127.0.0.1:PORT"
        self._channel = grpc.insecure_channel(self.host, options=CHANNEL_OPTIONS)
        channel = grpc.intercept_channel(self._channel, ReportingInterceptor(self.environment))
        self.stub = lottery_pb2_grpc.LotteryServiceStub(channel)
        self.last: tuple[lottery_pb2.DrawRequest, lottery_pb2.DrawResponse] | None = None

    def on_stop(self) -> None:
        self._channel.close()

    @task(10)
    def draw(self) -> None:
        request = lottery_pb2.DrawRequest(
            member_id=random.choice(self.seed["members"]),
            lottery_id=self.seed["lottery_id"],
            idempotency_key="ld-" + uuid.uuid4().hex,
        )
        response = self._call(request)
        if response is not None:
            self.last = (request, response)
            self._record(response)

    @task(1)
    def resend_same_key(self) -> None:
        if self.last is None:
            return
        request, first = self.last
        again = self._call(request)
        if again is None:
            return
        if (again.draw.id, again.draw.prize.id) != (first.draw.id, first.draw.prize.id):
            self._check_failed(
                "Draw replay",
                f"key {request.idempotency_key}: draw {first.draw.id} prize "
                f"{first.draw.prize.id}, the resend got {again.draw.id} {again.draw.prize.id}",
            )
        elif not again.replayed:
            self._check_failed("Draw replay", f"draw {first.draw.id} resent, not replayed")

    def _call(self, request: lottery_pb2.DrawRequest) -> lottery_pb2.DrawResponse | None:
        """A gateway's call: transient errors retried with the same key; None if refused."""
        deadline = time.monotonic() + RETRY_BUDGET_S
        delay = 0.1
        metadata = (("x-request-id", "ld-" + uuid.uuid4().hex), *CREDENTIAL)
        while True:
            try:
                response: lottery_pb2.DrawResponse = self.stub.Draw(
                    request, timeout=RPC_TIMEOUT_S, metadata=metadata
                )
                return response
            except grpc.RpcError as error:
                verdict = outcomes.classify("Draw", *outcomes.error_reason(error))
                if verdict.kind is not Kind.TRANSIENT:
                    return None
            if time.monotonic() + delay > deadline:
                self._check_failed("Draw gave up", f"key {request.idempotency_key}")
                return None
            gevent.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 1.0)

    def _record(self, response: lottery_pb2.DrawResponse) -> None:
        d = response.draw
        self.records.write(
            json.dumps(
                {
                    "draw_id": d.id,
                    "member_id": d.member_id,
                    "idempotency_key": d.idempotency_key,
                    "prize_id": d.prize.id,
                    "redemption_id": d.redemption_id,
                }
            )
            + "\n"
        )

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
