"""An operator changing an item's description (UpdateItem) or retiring it (RetireItem).
Each is an operator change: its audit event and its outbox event commit with it, and a call
that changes nothing writes neither (both are idempotent: values are absolute, and a
retired item stays retired).

Retired means: no new campaign takes the item (flashsale/campaigns.py checks the state under
the item's row lock, the same lock taken here, so a retire and a CreateCampaign cannot
cross). What it sold already is untouched: redemptions, fulfilment, returns and stock
adjustments (write-offs) go on. A campaign not yet ended (its ends_at still ahead, upcoming
or on sale, sold out or not: a cancellation can put units back on sale) blocks the retire;
EndCampaign ends one (flashsale/changes.py sets its ends_at to now).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

import auditlog
import events
from common import actor, validation
from common.errors import InvalidArgument, NotFound
from inventory import catalogue
from inventory.catalogue import ItemState
from inventory.errors import ItemHasLiveCampaign
from inventory.items import COLUMNS, Item, item_from_row

# What UpdateItem may change. sku and kind are not descriptive: campaigns, redemptions and
# the warehouse name the item by them, and a kind decides how it is delivered.
UPDATABLE = ("name", "description", "category", "variant_attributes")


def checked_changes(item_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The update's values in their stored form; InvalidArgument naming a bad one."""
    if not changes:
        raise InvalidArgument("update_mask", "is required: name the fields to change")
    checked: dict[str, Any] = {}
    for path, value in changes.items():
        if path == "name":
            checked[path] = validation.text(
                "item.name", value, max_length=validation.MAX_NAME_LENGTH, required=True
            )
        elif path == "description":
            checked[path] = catalogue.description("item.description", value)
        elif path == "category":
            checked[path] = catalogue.category("item.category", value)
        elif path == "variant_attributes":
            checked[path] = catalogue.variant_attributes("item.variant_attributes", value)
        else:
            raise InvalidArgument(
                "update_mask", f"cannot change {path!r}; one of: {', '.join(UPDATABLE)}"
            )
    return checked


class ItemChanges:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def update(self, item_id: str, changes: Mapping[str, Any]) -> Item:
        """Sets the fields of `changes` (path -> value, paths from UPDATABLE)."""
        item_id = validation.uuid_id("item.id", item_id)
        wanted = checked_changes(item_id, changes)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"SELECT {COLUMNS} FROM items WHERE id = %s FOR UPDATE", (item_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound("item", item_id)
            before = item_from_row(row)
            if wanted.get("variant_attributes") and before.product_id is None:
                raise InvalidArgument(
                    "item.variant_attributes", "are for a variant: this item has no product"
                )
            previous = {path: getattr(before, path) for path in wanted}
            changed = {p: v for p, v in wanted.items() if previous[p] != v}
            if not changed:
                return before  # nothing to do: no audit event, no outbox event
            sets = ", ".join(f"{path} = %s" for path in changed)
            values = [Jsonb(v) if p == "variant_attributes" else v for p, v in changed.items()]
            await cur.execute(
                f"UPDATE items SET {sets}, updated_at = now() WHERE id = %s RETURNING {COLUMNS}",
                (*values, item_id),
            )
            updated = await cur.fetchone()
            assert updated is not None
            await events.append(
                conn,
                events.EventType.ITEM_UPDATED,
                "item",
                item_id,
                {"item_id": item_id, "sku": before.sku, "changed": changed},
                actor=actor.current().subject,
            )
            await auditlog.record(
                conn,
                auditlog.UPDATE_ITEM,
                target_kind=auditlog.ITEM,
                target_id=item_id,
                content={
                    "changed": changed,
                    "previous": {p: previous[p] for p in changed},
                },
            )
        return item_from_row(updated)

    async def retire(self, item_id: str) -> Item:
        item_id = validation.uuid_id("item_id", item_id)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            # The lock Campaigns.create takes before it allots: a campaign created before
            # this commits is seen below, and one after sees the item RETIRED.
            await cur.execute(f"SELECT {COLUMNS} FROM items WHERE id = %s FOR UPDATE", (item_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound("item", item_id)
            if row["state"] == ItemState.RETIRED:
                return item_from_row(row)  # retired already: nothing to do, no event
            await cur.execute(
                # A bundle's parts too (campaign_parts, flashsale/bundles.py).
                "SELECT c.id::text, c.ends_at, count(*) OVER () AS live FROM campaigns c "
                "JOIN campaign_parts p ON p.campaign_id = c.id "
                "WHERE p.item_id = %s AND c.ends_at > now() ORDER BY c.ends_at, c.id LIMIT 1",
                (item_id,),
            )
            live = await cur.fetchone()
            if live is not None:
                raise ItemHasLiveCampaign(
                    item_id, live["id"], live["ends_at"].isoformat(), int(live["live"])
                )
            await cur.execute(
                "UPDATE items SET state = %s, retired_at = now(), updated_at = now() "
                f"WHERE id = %s RETURNING {COLUMNS}",
                (ItemState.RETIRED.value, item_id),
            )
            updated = await cur.fetchone()
            assert updated is not None
            retired = item_from_row(updated)
            assert retired.retired_at is not None
            await events.append(
                conn,
                events.EventType.ITEM_RETIRED,
                "item",
                item_id,
                {
                    "item_id": item_id,
                    "sku": retired.sku,
                    "retired_at": retired.retired_at.isoformat(),
                    "stock_on_hand": retired.stock_on_hand,
                },
                actor=actor.current().subject,
            )
            await auditlog.record(
                conn,
                auditlog.RETIRE_ITEM,
                target_kind=auditlog.ITEM,
                target_id=item_id,
                content={"item_id": item_id, "sku": retired.sku},
            )
        return retired
