"""The event and the change commit together or not at all: when PostgreSQL refuses the event
(here a CHECK constraint added for the test refuses one request id), the change is gone
too. Had the event been written after the change's commit, or on another connection, the
change would have stayed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import pytest

from loyalty.v1 import campaign_pb2, catalog_pb2, common_pb2, member_pb2
from server.app import Stores
from tests.auditlog.helpers import events, sent_as
from tests.conftest import Running
from tests.factories import failure, ts

REFUSED_ID = "audit-refuses-this-request"


@pytest.fixture
def refusing(clean: Stores) -> Iterator[None]:
    """audit_events refuses rows of REFUSED_ID while the test runs."""
    with psycopg.connect(clean.database_url, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE audit_events ADD CONSTRAINT test_refuses "
            f"CHECK (request_id <> '{REFUSED_ID}')"
        )
    try:
        yield
    finally:
        with psycopg.connect(clean.database_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE audit_events DROP CONSTRAINT test_refuses")


async def _fails(call: object) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call  # type: ignore[misc]
    assert failure(error.value).code == grpc.StatusCode.INTERNAL


async def test_a_change_whose_event_is_refused_does_not_commit(
    server: Running, refusing: None
) -> None:
    api = server.api
    item = await api.item(stock=5)
    member = await api.member(points=100)
    refused = sent_as(REFUSED_ID)
    starts = datetime.now(UTC)

    await _fails(
        api.catalog.CreateItem(
            catalog_pb2.CreateItemRequest(
                sku="NEVER-1", name="Ghost", kind=common_pb2.ITEM_KIND_VIRTUAL, initial_stock=1
            ),
            metadata=refused,
        )
    )
    await _fails(
        api.catalog.AdjustStock(
            catalog_pb2.AdjustStockRequest(
                item_id=item.id, delta=3, reason="restock", idempotency_key="adj-1"
            ),
            metadata=refused,
        )
    )
    await _fails(
        api.campaigns.CreateCampaign(
            campaign_pb2.CreateCampaignRequest(
                item_id=item.id,
                name="Ghost sale",
                units_allotted=2,
                points_price=10,
                per_member_limit=1,
                starts_at=ts(starts),
                ends_at=ts(starts + timedelta(hours=1)),
            ),
            metadata=refused,
        )
    )
    await _fails(
        api.members.AdjustPoints(
            member_pb2.AdjustPointsRequest(
                member_id=member.id,
                delta=50,
                reason="goodwill",
                operator_id="op",
                idempotency_key="p-1",
            ),
            metadata=refused,
        )
    )
    await _fails(
        api.members.FreezeMember(
            member_pb2.FreezeMemberRequest(member_id=member.id, reason="fraud"),
            metadata=refused,
        )
    )
    await _fails(
        api.members.SetManualTier(
            member_pb2.SetManualTierRequest(
                member_id=member.id, tier="gold", reason="vip", operator_id="op"
            ),
            metadata=refused,
        )
    )

    async with server.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM items WHERE sku = 'NEVER-1'), "
            "(SELECT stock_on_hand FROM items WHERE id = %s), "
            "(SELECT count(*) FROM stock_adjustments), (SELECT count(*) FROM campaigns), "
            "(SELECT count(*) FROM ledger_entries WHERE kind = 'adjust'), "
            "(SELECT count(*) FROM member_actions), "
            "(SELECT frozen FROM members WHERE id = %s), "
            "(SELECT manual_tier FROM members WHERE id = %s)",
            (item.id, member.id, member.id),
        )
        state = await cur.fetchone()
    assert state == (0, 5, 0, 0, 0, 0, False, None)
    assert (await api.balance(member.id)).balance == 100
    assert [e for e in await events(server) if e.request_id == REFUSED_ID] == []

    # Any other request id goes through: the refusal above was the event's, not the change's.
    stock = await api.catalog.AdjustStock(
        catalog_pb2.AdjustStockRequest(
            item_id=item.id, delta=3, reason="restock", idempotency_key="adj-1"
        )
    )
    assert (stock.item.stock_on_hand, stock.replayed) == (8, False)
