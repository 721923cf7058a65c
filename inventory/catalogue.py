"""The catalogue's descriptive side of an item: description, category, lifecycle state, and
the product it is a variant of with its variant attributes. The forms are checked here
(each failure an InvalidArgument naming the field); migration 0014 repeats them as CHECKs.

A category is a lowercase dotted slug ("home.kitchen", "fashion.kids-wear"), there for earn
rules and reports to group by (none reads it yet); a filter on "home" takes its
sub-categories too, so the dots are the hierarchy and nothing else is allowed in it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from common import validation
from common.errors import InvalidArgument, NotFound
from inventory.errors import TooManyVariants

MAX_DESCRIPTION_LENGTH = 2000
MAX_CATEGORY_LENGTH = 100
# Used with fullmatch ("$" would let a trailing newline through). Keep in step with the
# CHECKs of migration 0014.
CATEGORY_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*(?:\.[a-z0-9]+(?:-[a-z0-9]+)*)*")
# A variant is told apart by a few short attributes (size, colour, edition), not a document.
MAX_ATTRIBUTES = 10
ATTRIBUTE_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_ATTRIBUTE_VALUE_LENGTH = 64
# A product's variants are returned whole by GetProduct: bounded so that answer is.
MAX_VARIANTS = 100

# The columns an item row carries beyond inventory/items.py's own (read with them).
DETAIL_COLUMNS = (
    "description, category, state, retired_at, product_id::text, variant_attributes, updated_at"
)


class ItemState(StrEnum):
    ACTIVE = "ACTIVE"
    RETIRED = "RETIRED"  # no new campaign; redemptions, stock and returns go on


def description(field_name: str, value: str) -> str:
    return validation.text(field_name, value, max_length=MAX_DESCRIPTION_LENGTH, required=False)


def category(field_name: str, value: str) -> str | None:
    """'' is no category (None); otherwise a lowercase dotted slug."""
    if not value:
        return None
    if len(value) > MAX_CATEGORY_LENGTH:
        raise InvalidArgument(field_name, f"must be at most {MAX_CATEGORY_LENGTH} characters")
    if not CATEGORY_RE.fullmatch(value):
        raise InvalidArgument(
            field_name,
            "must be lowercase words of a-z 0-9 joined by '-', levels separated by '.' "
            "(e.g. home.kitchen)",
        )
    return value


def variant_attributes(field_name: str, value: Mapping[str, str]) -> dict[str, str]:
    if len(value) > MAX_ATTRIBUTES:
        raise InvalidArgument(field_name, f"must have at most {MAX_ATTRIBUTES} attributes")
    checked: dict[str, str] = {}
    for key in sorted(value):
        if not ATTRIBUTE_KEY_RE.fullmatch(key):
            raise InvalidArgument(
                field_name,
                f"key {key[:40]!r} must be 1..32 characters of a-z 0-9 _, a letter first",
            )
        checked[key] = validation.text(
            f"{field_name}[{key}]",
            value[key],
            max_length=MAX_ATTRIBUTE_VALUE_LENGTH,
            required=True,
        )
    return checked


@dataclass(frozen=True)
class ItemDetails:
    """What CreateItem may say beyond sku, name, kind and stock. Build with `checked`."""

    description: str = ""
    category: str | None = None
    product_id: str | None = None
    variant_attributes: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def checked(
        *,
        description_: str = "",
        category_: str = "",
        product_id: str = "",
        variant_attributes_: Mapping[str, str] | None = None,
    ) -> ItemDetails:
        attributes = variant_attributes("variant_attributes", variant_attributes_ or {})
        pid = validation.uuid_id("product_id", product_id) if product_id else None
        if attributes and pid is None:
            # Attributes tell a product's variants apart; alone they describe nothing.
            raise InvalidArgument("variant_attributes", "are for a variant: set product_id")
        return ItemDetails(
            description=description("description", description_),
            category=category("category", category_),
            product_id=pid,
            variant_attributes=attributes,
        )

    def audit(self) -> dict[str, Any]:
        """The fields for the CreateItem audit event (only those given)."""
        found: dict[str, Any] = {}
        if self.description:
            found["description"] = self.description
        if self.category:
            found["category"] = self.category
        if self.product_id:
            found["product_id"] = self.product_id
            found["variant_attributes"] = self.variant_attributes
        return found


NO_DETAILS = ItemDetails()


async def attach(conn: AsyncConnection[Any], item_id: str, details: ItemDetails) -> dict[str, Any]:
    """Writes a new item's details, in its creating transaction; returns the DETAIL_COLUMNS.

    A variant locks its product's row, so two CreateItem calls cannot both take the last of
    MAX_VARIANTS; with no category of its own it takes the product's."""
    cur = conn.cursor(row_factory=dict_row)
    chosen = details.category
    if details.product_id is not None:
        await cur.execute(
            "SELECT category FROM products WHERE id = %s FOR UPDATE", (details.product_id,)
        )
        product = await cur.fetchone()
        if product is None:
            raise NotFound("product", details.product_id)
        await cur.execute(
            "SELECT count(*) AS n FROM items WHERE product_id = %s", (details.product_id,)
        )
        counted = await cur.fetchone()
        if counted is not None and counted["n"] >= MAX_VARIANTS:
            raise TooManyVariants(details.product_id, MAX_VARIANTS)
        chosen = chosen or product["category"]
    await cur.execute(
        "UPDATE items SET description = %s, category = %s, product_id = %s, "
        f"variant_attributes = %s WHERE id = %s RETURNING {DETAIL_COLUMNS}",
        (
            details.description,
            chosen,
            details.product_id,
            Jsonb(details.variant_attributes),
            item_id,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


def attributes_of(value: object) -> dict[str, str]:
    """A variant_attributes column as read (psycopg gives jsonb as a dict; text as a fallback)."""
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}
