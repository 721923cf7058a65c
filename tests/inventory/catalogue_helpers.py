"""Helpers of the catalogue tests: items with details, every page of a listing, and what a
change wrote to the audit trail and the outbox (read from PostgreSQL itself)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from loyalty.v1 import catalog_pb2, common_pb2
from server.app import Stores
from tests.factories import Api


async def item(
    api: Api,
    *,
    sku: str | None = None,
    name: str = "Lucky bag",
    kind: common_pb2.ItemKind.ValueType = common_pb2.ITEM_KIND_VIRTUAL,
    stock: int = 10,
    **details: Any,
) -> catalog_pb2.Item:
    return await api.catalog.CreateItem(
        catalog_pb2.CreateItemRequest(
            sku=sku or "sku-" + uuid.uuid4().hex[:12],
            name=name,
            kind=kind,
            initial_stock=stock,
            **details,
        )
    )


async def all_pages(
    api: Api, page_size: int, **filters: Any
) -> tuple[list[catalog_pb2.Item], list[int]]:
    """Every item the filters take, page by page; and the size of each page."""
    found: list[catalog_pb2.Item] = []
    sizes: list[int] = []
    token = ""
    while True:
        page = await api.catalog.ListItems(
            catalog_pb2.ListItemsRequest(page_size=page_size, page_token=token, **filters)
        )
        found += page.items
        sizes.append(len(page.items))
        token = page.next_page_token
        if not token:
            return found, sizes
        assert len(sizes) < 100, "the listing does not end"


async def written(stores: Stores, target_id: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The audit actions recorded for `target_id` and the outbox events about it (type and
    payload), oldest first."""
    async with await psycopg.AsyncConnection.connect(stores.database_url) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT action FROM audit_events WHERE target_id = %s ORDER BY id", (target_id,)
        )
        actions = [r["action"] for r in await cur.fetchall()]
        await cur.execute(
            "SELECT type, payload, actor FROM events WHERE subject_id = %s ORDER BY sequence",
            (target_id,),
        )
        outbox = await cur.fetchall()
    return actions, outbox
