"""ListItems: the catalogue filtered and paged by sku.

Filters combine with AND; an empty one filters nothing. Pages are keyset on the unique sku
(the next page starts after the last sku of this one), so a page is stable while items are
added or retired around it. The token also carries a digest of the filters: a token used
with other filters would silently skip or repeat items, so it is refused instead.

Name search is a case-insensitive "contains" (ILIKE '%...%', the pattern's wildcards
escaped). A mall's catalogue is thousands of items, which PostgreSQL scans in well under a
millisecond; pg_trgm would index it, but it is an extension a managed database may not
offer (migration 0014).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from common import validation
from common.errors import InvalidArgument
from inventory import catalogue
from inventory.catalogue import ItemState
from inventory.items import COLUMNS, SKU_RE, Item, ItemKind, item_from_row

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class ItemQuery:
    """ListItems' filters; empty / None: no filter."""

    sku_prefix: str = ""
    name_contains: str = ""
    kind: ItemKind | None = None
    category: str = ""  # the category and its sub-categories ("home" takes "home.kitchen")
    state: ItemState | None = None
    product_id: str = ""


@dataclass(frozen=True)
class ItemPage:
    items: list[Item]
    next_page_token: str  # empty on the last page


def _like(text: str) -> str:
    """`text` as a literal inside a LIKE pattern (backslash is LIKE's default escape)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def checked_query(query: ItemQuery) -> ItemQuery:
    if query.sku_prefix and not SKU_RE.fullmatch(query.sku_prefix):
        raise InvalidArgument("sku_prefix", "must be 1..64 characters of A-Z a-z 0-9 . _ -")
    name = validation.text(
        "name_contains", query.name_contains, max_length=validation.MAX_NAME_LENGTH, required=False
    )
    category = catalogue.category("category", query.category) or ""
    product = validation.uuid_id("product_id", query.product_id) if query.product_id else ""
    return ItemQuery(query.sku_prefix, name, query.kind, category, query.state, product)


def _digest(query: ItemQuery) -> str:
    raw = json.dumps(
        [
            query.sku_prefix,
            query.name_contains,
            query.kind,
            query.category,
            query.state,
            query.product_id,
        ]
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode_token(query: ItemQuery, last_sku: str) -> str:
    raw = json.dumps({"after": last_sku, "q": _digest(query)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(query: ItemQuery, token: str) -> str | None:
    """The sku to start after; None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
        after, digest = decoded["after"], decoded["q"]
    except (ValueError, TypeError, KeyError) as e:
        raise InvalidArgument("page_token", "is not a token this service issued") from e
    if not isinstance(after, str) or not SKU_RE.fullmatch(after):
        raise InvalidArgument("page_token", "is not a token this service issued")
    if digest != _digest(query):
        raise InvalidArgument("page_token", "was issued for other filters: pass the same filters")
    return after


class ItemListing:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def list_page(self, query: ItemQuery, *, page_size: int, page_token: str) -> ItemPage:
        if page_size == 0:
            page_size = DEFAULT_PAGE_SIZE
        validation.int_range("page_size", page_size, minimum=1, maximum=MAX_PAGE_SIZE)
        query = checked_query(query)
        after = decode_token(query, page_token)
        clauses: list[str] = []
        params: list[object] = []
        if query.sku_prefix:
            clauses.append("sku LIKE %s")
            params.append(_like(query.sku_prefix) + "%")
        if query.name_contains:
            clauses.append("name ILIKE %s")
            params.append("%" + _like(query.name_contains) + "%")
        if query.kind is not None:
            clauses.append("kind = %s")
            params.append(query.kind.value)
        if query.category:
            clauses.append("(category = %s OR category LIKE %s)")
            params += [query.category, _like(query.category) + ".%"]
        if query.state is not None:
            clauses.append("state = %s")
            params.append(query.state.value)
        if query.product_id:
            clauses.append("product_id = %s")
            params.append(query.product_id)
        if after is not None:
            clauses.append("sku > %s")
            params.append(after)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                f"SELECT {COLUMNS} FROM items {where} ORDER BY sku LIMIT %s",
                (*params, page_size + 1),
            )
            rows = await cur.fetchall()
        items = [item_from_row(r) for r in rows[:page_size]]
        token = encode_token(query, items[-1].sku) if len(rows) > page_size else ""
        return ItemPage(items, token)
