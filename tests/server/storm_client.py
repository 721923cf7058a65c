"""The client side of the storm test (tests/server/test_storm.py), run as its own process so
that its CPU is not the server's: a closed-loop baseline, a storm of many more callers than
the server admits, then the baseline load again. Prints one JSON object: per phase, the
answers by reason, and the latency and start offset of every answer.

    python -m tests.server.storm_client '{"target": ..., "campaign_id": ..., ...}'

Callers honour RetryInfo: after RESOURCE_EXHAUSTED they wait the delay the server asked for
(as a well-behaved gateway does), otherwise they call again at once.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from loyalty.v1 import redemption_pb2, redemption_pb2_grpc
from tests import auth
from tests.factories import failure


async def _phase(
    stub: redemption_pb2_grpc.RedemptionServiceAsyncStub,
    *,
    campaign_id: str,
    members: list[str],
    callers: int,
    seconds: float,
    timeout_s: float,
    oks: list[dict[str, Any]],
) -> dict[str, Any]:
    began, wall = time.perf_counter(), time.time()
    stop_at = began + seconds
    answers: list[tuple[float, float, str]] = []  # (start offset, latency, reason)

    async def caller() -> None:
        while time.perf_counter() < stop_at:
            member = random.choice(members)
            request = redemption_pb2.RedeemRequest(
                member_id=member,
                campaign_id=campaign_id,
                quantity=1,
                idempotency_key=f"storm-{uuid.uuid4()}",
            )
            start = time.perf_counter()
            wait = 0.0
            try:
                answer = await stub.Redeem(request, timeout=timeout_s)
                reason = "OK"
                oks.append(
                    {
                        "redemption_id": answer.redemption.id,
                        "member_id": member,
                        "idempotency_key": request.idempotency_key,
                        "status": redemption_pb2.RedemptionStatus.Name(
                            answer.redemption.status
                        ).removeprefix("REDEMPTION_STATUS_"),
                        "campaign_id": campaign_id,
                        "quantity": 1,
                    }
                )
            except grpc.aio.AioRpcError as e:
                f = failure(e)
                reason = f.reason or f.code.name
                wait = f.retry_delay_s if f.code == grpc.StatusCode.RESOURCE_EXHAUSTED else 0.0
            answers.append((start - began, time.perf_counter() - start, reason))
            if wait:
                await asyncio.sleep(wait * random.uniform(1.0, 1.5))

    await asyncio.gather(*(caller() for _ in range(callers)))
    return {
        "began": wall,  # wall clock, to match the server's access log records
        "seconds": time.perf_counter() - began,
        "answers": answers,
    }


async def main(spec: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    channel = auth.channel(spec["target"])
    stub = redemption_pb2_grpc.RedemptionServiceStub(channel)
    oks: list[dict[str, Any]] = []
    common = {
        "campaign_id": spec["campaign_id"],
        "members": spec["members"],
        "timeout_s": spec["timeout_s"],
        "oks": oks,
    }
    result: dict[str, Any] = {}
    try:
        for name, callers, seconds in (
            ("warmup", spec["calm_callers"], 0.5),
            ("baseline", spec["calm_callers"], spec["calm_seconds"]),
            ("storm", spec["storm_callers"], spec["storm_seconds"]),
            ("recovery", spec["calm_callers"], spec["recovery_seconds"]),
        ):
            result[name] = await _phase(stub, **common, callers=callers, seconds=seconds)
    finally:
        await channel.close()
    return result, oks


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    result, oks = asyncio.run(main(spec))
    Path(spec["oks_file"]).write_text("".join(json.dumps(ok) + "\n" for ok in oks))
    print(json.dumps(result))
