"""The catalogue's row locks: a retire racing a new campaign of the same item ends with one
of them refused, never a retired item with a live campaign; variants racing for a
product's last places never pass its bound."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import psycopg

from inventory.catalogue import MAX_VARIANTS
from loyalty.v1 import campaign_pb2, catalog_pb2
from server.app import Stores
from tests.conftest import Running
from tests.factories import failure, ts
from tests.inventory.catalogue_helpers import item


async def _live_campaigns(stores: Stores, item_id: str) -> int:
    async with await psycopg.AsyncConnection.connect(stores.database_url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM campaigns WHERE item_id = %s AND ends_at > now()", (item_id,)
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_retire_and_a_new_campaign_never_cross(server: Running) -> None:
    api = server.api
    outcomes: set[tuple[bool, bool]] = set()
    for n in range(12):
        target = await item(api, sku=f"RACE-{n}", stock=5)
        starts = datetime.now(UTC) - timedelta(seconds=30)
        create = api.campaigns.CreateCampaign(
            campaign_pb2.CreateCampaignRequest(
                item_id=target.id,
                name="Race",
                units_allotted=1,
                points_price=10,
                per_member_limit=1,
                starts_at=ts(starts),
                ends_at=ts(starts + timedelta(hours=1)),
            )
        )
        retire = api.catalog.RetireItem(catalog_pb2.RetireItemRequest(item_id=target.id))
        created, retired = await asyncio.gather(create, retire, return_exceptions=True)

        campaign_won = isinstance(created, campaign_pb2.Campaign)
        retire_won = isinstance(retired, catalog_pb2.Item)
        assert campaign_won != retire_won, (created, retired)  # exactly one of them
        loser = retired if campaign_won else created
        assert isinstance(loser, grpc.aio.AioRpcError)
        assert failure(loser).reason == (
            "ITEM_HAS_LIVE_CAMPAIGN" if campaign_won else "ITEM_RETIRED"
        )
        after = await api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=target.id))
        live = await _live_campaigns(server.app.stores, target.id)
        assert (after.state == catalog_pb2.ITEM_STATE_RETIRED, live) == (
            (True, 0) if retire_won else (False, 1)
        )
        assert after.stock_on_hand == (4 if campaign_won else 5)
        outcomes.add((campaign_won, retire_won))
    assert outcomes  # (which one wins is up to the scheduler; both are checked when seen)


async def test_a_product_takes_at_most_its_bound_of_variants(server: Running) -> None:
    api = server.api
    product = await api.catalog.CreateProduct(catalog_pb2.CreateProductRequest(name="Sock"))
    for n in range(MAX_VARIANTS - 3):
        await item(api, sku=f"SOCK-{n:03d}", product_id=product.id)

    # Six racing for the last three places.
    racing = await asyncio.gather(
        *(
            item(api, sku=f"SOCK-R{n}", product_id=product.id, variant_attributes={"n": str(n)})
            for n in range(6)
        ),
        return_exceptions=True,
    )

    refused = [r for r in racing if isinstance(r, grpc.aio.AioRpcError)]
    assert len(refused) == 3
    for r in refused:
        f = failure(r)
        assert (f.code, f.reason, f.metadata["max_variants"]) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "TOO_MANY_VARIANTS",
            str(MAX_VARIANTS),
        )
    got = await api.catalog.GetProduct(catalog_pb2.GetProductRequest(product_id=product.id))
    assert len(got.variants) == MAX_VARIANTS
    # A refused variant left no item behind.
    listed = await api.catalog.ListItems(catalog_pb2.ListItemsRequest(sku_prefix="SOCK-R"))
    assert len(listed.items) == 3
