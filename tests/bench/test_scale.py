"""`make bench-scale` at tiny sizes, against real stores and the real server: the bulk rows
(COPY clones of domain-made templates) pass the audit and redeem, the sweeper releases every
lapsed hold and gives its units and points back, and the JSON carries the ratios."""

from __future__ import annotations

import json
from pathlib import Path

from bench import scale

HOLDS = 300


def test_scale_at_tiny_sizes(tmp_path: Path) -> None:
    code = scale.main(
        [
            "--out",
            str(tmp_path),
            "--members-small",
            "200",
            "--campaigns-small",
            "5",
            "--members-large",
            "2000",
            "--campaigns-large",
            "50",
            "--holds",
            str(HOLDS),
            "--seconds",
            "1",
            "--warmup",
            "0.5",
        ]
    )
    [written] = tmp_path.glob("*-scale.json")
    doc = json.loads(written.read_text())
    assert code == 0, doc["problems"]
    assert doc["problems"] == []

    for name, members, campaigns in (("small", 200, 5), ("large", 2000, 50)):
        found = doc["sets"][name]
        assert (found["members"], found["campaigns"]) == (members, campaigns)
        # The last clone of each redeemed through the real server.
        assert found["probe"] == "OK"
        assert found["audit"]["ok"], found["audit"]["violations"]
        # Random cloned members on random cloned campaigns: every answer a success.
        assert set(found["success"]["outcomes"]) == {"OK"}
        assert found["success"]["calls"] > 0
        assert set(found["sold_out"]["outcomes"]) == {"SOLD_OUT"}
        assert found["postgresql"]["redemptions_committed"] >= found["success"]["calls"]
        assert found["postgresql"]["bytes_per_redemption"] > 0
        assert found["redis"]["keys_per_member"] >= 1
        assert found["redis"]["keys_per_campaign"] >= 1
        assert found["redis"]["bytes_per_member"] > 0

    sweep = doc["sets"]["large"]["sweeper"]
    assert sweep["holds"] == sweep["released"] == HOLDS
    assert sweep["holds_in_flight_after"] == 0
    assert sweep["units_in_flight_after"] == 0
    assert sweep["points_held_after"] == 0
    assert "sweeper" not in doc["sets"]["small"]

    for field in (
        "success_per_second",
        "success_p99_ms",
        "success_server_cpu_us",
        "sold_out_per_second",
        "sold_out_p99_ms",
        "sold_out_server_cpu_us",
        "redis_bytes_per_member",
        "redis_bytes_per_campaign",
        "pg_bytes_per_redemption",
    ):
        assert isinstance(doc["ratios"][field], float), field
    assert doc["target"]["met"] == (doc["ratios"]["success_per_second"] >= 0.9)
