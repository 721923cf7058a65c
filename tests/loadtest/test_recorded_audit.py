"""`check_recorded`, the audit's half that compares what clients were told with PostgreSQL:
it passes on the truth and catches a lost, doubled or rewritten OK."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from flashsale.audit import RecordedOk, check_recorded, load_recorded
from loyalty.v1 import common_pb2, redemption_pb2
from tests.conftest import Running

# Cancellable after commit: no code is issued (a virtual good's code is final).
SERVICE = common_pb2.ITEM_KIND_SERVICE


async def _told(server: Running) -> RecordedOk:
    api = server.api
    campaign = await api.campaign(units=5, kind=SERVICE)
    member = await api.member(points=1_000)
    redeemed = (await api.redeem(member.id, campaign.id, idem="k-told")).redemption
    return RecordedOk(
        redemption_id=redeemed.id,
        member_id=member.id,
        idempotency_key="k-told",
        status="COMMITTED",
        campaign_id=campaign.id,
        quantity=1,
    )


async def test_every_recorded_ok_is_found_once(server: Running) -> None:
    told = await _told(server)
    replayed = replace(told, status="")

    assert await check_recorded(server.app.pool, [told, replayed]) == []


async def test_an_ok_missing_from_postgresql_is_caught(server: Running) -> None:
    told = await _told(server)
    lost = replace(told, redemption_id=str(uuid.uuid4()), idempotency_key="k-never-stored")

    violations = await check_recorded(server.app.pool, [told, lost])

    assert len(violations) == 1 and "found 0 times" in violations[0]


async def test_two_redemptions_for_one_key_or_a_wrong_id_are_caught(server: Running) -> None:
    told = await _told(server)
    other = replace(told, redemption_id=str(uuid.uuid4()))

    violations = await check_recorded(server.app.pool, [told, other])

    assert any("one key answered with 2 redemptions" in v for v in violations)
    assert any(f"told {other.redemption_id}" in v for v in violations)


async def test_a_status_the_client_was_told_may_not_be_undone(server: Running) -> None:
    told = await _told(server)
    await server.api.redemptions.CancelRedemption(
        redemption_pb2.CancelRedemptionRequest(
            redemption_id=told.redemption_id, member_id=told.member_id
        )
    )
    cancelled = replace(told, status="CANCELLED")
    assert await check_recorded(server.app.pool, [told, cancelled]) == []

    async with server.app.pool.connection() as conn:  # behind the service's back
        await conn.execute(
            "UPDATE redemptions SET status = 'COMMITTED' WHERE id = %s", (told.redemption_id,)
        )
    violations = await check_recorded(server.app.pool, [told, cancelled])
    assert len(violations) == 1 and "PostgreSQL has COMMITTED" in violations[0]


def test_records_load_from_files_and_folders(tmp_path: Path) -> None:
    record = RecordedOk(str(uuid.uuid4()), str(uuid.uuid4()), "k-1", "COMMITTED", "", 1)
    (tmp_path / "ok-a.jsonl").write_text(json.dumps(asdict(record) | {"extra": 1}) + "\n\n")
    (tmp_path / "ok-b.jsonl").write_text(json.dumps(asdict(record)) + "\n")
    assert load_recorded([tmp_path]) == [record, record]

    bad = tmp_path / "bad.json"
    bad.write_text('{"redemption_id": "not-a-uuid", "member_id": "x", "idempotency_key": "k"}\n')
    with pytest.raises(ValueError, match=r"bad\.json:1"):
        load_recorded([bad])
