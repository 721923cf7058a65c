"""Products: what a shopper thinks of as one thing ("Tea mug"), sold as variant items, each
its own SKU and stock ("Tea mug, red, M": CreateItem with product_id and
variant_attributes, inventory/catalogue.py). Creating one is an operator change: it writes
its audit event in its own transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

import auditlog
from common import validation
from common.errors import NotFound
from inventory import catalogue
from inventory.items import COLUMNS, Item, item_from_row


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    description: str
    category: str | None
    created_at: datetime


@dataclass(frozen=True)
class ProductWithVariants:
    product: Product
    variants: list[Item]  # by sku; at most catalogue.MAX_VARIANTS


_PRODUCT_COLUMNS = "id::text, name, description, category, created_at"


class Products:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def create(self, *, name: str, description: str, category: str) -> Product:
        name = validation.text("name", name, max_length=validation.MAX_NAME_LENGTH, required=True)
        description = catalogue.description("description", description)
        chosen = catalogue.category("category", category)
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.cursor(row_factory=dict_row).execute(
                "INSERT INTO products (name, description, category) VALUES (%s, %s, %s) "
                f"RETURNING {_PRODUCT_COLUMNS}",
                (name, description, chosen),
            )
            row = await cur.fetchone()
            assert row is not None
            await auditlog.record(
                conn,
                auditlog.CREATE_PRODUCT,
                target_kind=auditlog.PRODUCT,
                target_id=row["id"],
                content={"name": name, "description": description, "category": chosen},
            )
        return Product(**row)

    async def get(self, product_id: str) -> ProductWithVariants:
        product_id = validation.uuid_id("product_id", product_id)
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"SELECT {_PRODUCT_COLUMNS} FROM products WHERE id = %s", (product_id,)
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound("product", product_id)
            # Bounded: CreateItem refuses a variant past MAX_VARIANTS (the +1 only guards).
            await cur.execute(
                f"SELECT {COLUMNS} FROM items WHERE product_id = %s ORDER BY sku LIMIT %s",
                (product_id, catalogue.MAX_VARIANTS + 1),
            )
            variants = [item_from_row(r) for r in await cur.fetchall()]
        return ProductWithVariants(Product(**row), variants)
