-- The catalogue (issue 20 item 1): products grouping variant items, and descriptive fields,
-- a category and a lifecycle state on items. Rules (slug form, attribute bounds, who may
-- retire what) are in inventory/catalogue.py and inventory/products.py; the CHECKs below
-- are the last word on the forms.

-- A product: what a shopper thinks of as one thing ("Tea mug"), sold as variant items,
-- each its own SKU and stock ("Tea mug, red, M").
CREATE TABLE products (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (name <> ''),
    description text NOT NULL DEFAULT '',
    -- A lowercase dotted slug, e.g. 'home.kitchen' (inventory/catalogue.py CATEGORY_RE).
    category    text CHECK (category ~ '^[a-z0-9]+(-[a-z0-9]+)*(\.[a-z0-9]+(-[a-z0-9]+)*)*$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE items
    ADD COLUMN description text NOT NULL DEFAULT '',
    ADD COLUMN category text
        CHECK (category ~ '^[a-z0-9]+(-[a-z0-9]+)*(\.[a-z0-9]+(-[a-z0-9]+)*)*$'),
    -- RETIRED: no new campaign takes it (Campaigns.create); its redemptions, stock
    -- adjustments and returns go on as before.
    ADD COLUMN state text NOT NULL DEFAULT 'ACTIVE' CHECK (state IN ('ACTIVE', 'RETIRED')),
    ADD COLUMN retired_at timestamptz,
    ADD COLUMN product_id uuid REFERENCES products (id),
    -- {"size": "M", "colour": "red"}: string values, bounded in count and length by
    -- inventory/catalogue.py.
    ADD COLUMN variant_attributes jsonb NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(variant_attributes) = 'object'),
    -- The last UpdateItem or RetireItem (created_at until then).
    ADD COLUMN updated_at timestamptz,
    ADD CONSTRAINT items_retired_at CHECK ((state = 'RETIRED') = (retired_at IS NOT NULL));

UPDATE items SET updated_at = created_at;
ALTER TABLE items ALTER COLUMN updated_at SET NOT NULL, ALTER COLUMN updated_at SET DEFAULT now();

-- ListItems pages by sku (the unique index items_sku_key) and filters by these. The name
-- search is a case-insensitive "contains" (ILIKE '%...%'): a mall's catalogue is thousands
-- of rows, which PostgreSQL scans in well under a millisecond per page; pg_trgm would index
-- it but is an extension a managed database may not offer, so it is not required here.
CREATE INDEX items_category ON items (category text_pattern_ops, sku) WHERE category IS NOT NULL;
CREATE INDEX items_state ON items (state, sku);
CREATE INDEX items_product ON items (product_id, sku) WHERE product_id IS NOT NULL;
-- Retiring an item looks for its campaigns not yet ended.
CREATE INDEX campaigns_item_ends ON campaigns (item_id, ends_at);
