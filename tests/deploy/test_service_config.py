"""deploy/service-config.json, the gRPC service config the README recommends to clients:
every method it names exists, each method has a deadline, retries are only where they are
safe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loyalty.v1 import events_pb2
from server.registry import rpc_methods

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "service-config.json"
# Safe to retry: reads, and Redeem only because a retry carries the same idempotency key
# (the server answers the first attempt's outcome: `replayed`).
# Idempotent by the member's key: a retry answers the first call's outcome.
RETRY_SAFE = {
    ("loyalty.v1.RedemptionService", "Redeem"),
    ("loyalty.v1.LotteryService", "Draw"),
    ("loyalty.v1.CheckInService", "CheckIn"),
}


# A watch is meant to stay open: a deadline would cut it (clients reconnect after their
# last sequence instead, docs/events.md).
NO_DEADLINE = {events_pb2.DESCRIPTOR.services_by_name["EventService"].full_name}


def _methods() -> dict[str, set[str]]:
    """Every Surge service but the watches -> its methods."""
    services: dict[str, set[str]] = {}
    for service, method in rpc_methods():
        if service not in NO_DEADLINE:
            services.setdefault(service, set()).add(method)
    return services


def _config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(CONFIG.read_text())
    return config


def test_every_name_is_a_real_service_or_method() -> None:
    services = _methods()
    named = [n for entry in _config()["methodConfig"] for n in entry["name"]]
    assert named
    for name in named:
        assert name["service"] in services, name
        if "method" in name:
            assert name["method"] in services[name["service"]], name
    # Every method has a deadline: named itself, or through its service's entry.
    whole = {n["service"] for n in named if "method" not in n}
    assert whole == set(services)


def test_retries_only_where_safe() -> None:
    for entry in _config()["methodConfig"]:
        policy = entry.get("retryPolicy")
        if policy is None:
            continue
        assert set(policy["retryableStatusCodes"]) <= {"UNAVAILABLE", "ABORTED"}
        assert policy["maxAttempts"] <= 5  # grpc's own cap
        for name in entry["name"]:
            method = name.get("method", "")
            safe = (name["service"], method) in RETRY_SAFE or method.startswith(
                ("Get", "List", "Lookup")
            )
            assert safe, f"{name} is retried but is not a read or idempotent"
