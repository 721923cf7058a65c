-- Low-stock signal and physical counts (issue 20 items 4 and 5; inventory/low_stock.py,
-- inventory/counts.py).
--
-- An item is low when its available units (items.stock_on_hand) are below its threshold.
-- stock_low remembers the last verdict, so stock_move (inventory/sql/stock.sql) writes
-- stock.low / stock.replenished once per crossing, not on every change.
ALTER TABLE items
    ADD COLUMN low_stock_threshold bigint CHECK (low_stock_threshold >= 0),
    ADD COLUMN stock_low boolean NOT NULL DEFAULT false;
-- ListLowStockItems and the gauges read only watched items.
CREATE INDEX items_low_stock_watched ON items (created_at, id)
    WHERE low_stock_threshold IS NOT NULL;

-- A physical count of one location, as submitted (SubmitStockCount, `surge stock count`).
-- The key is Stripe-style: the same key with the same lines answers the saved report; with
-- other lines it is refused. `fingerprint` is a hash of the location and the lines.
CREATE TABLE stock_counts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    location_id     uuid NOT NULL REFERENCES locations (id),
    idempotency_key text NOT NULL UNIQUE,
    fingerprint     text NOT NULL,
    actor           text,
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- The count's report, line by line (`line` is the 1-based position in the request). Units
-- as found when the count was applied: a replay answers these, not today's levels.
CREATE TABLE stock_count_lines (
    count_id   uuid NOT NULL REFERENCES stock_counts (id),
    line       integer NOT NULL CHECK (line > 0),
    sku        text NOT NULL,
    item_id    uuid,
    counted    bigint NOT NULL CHECK (counted >= 0),
    expected   bigint NOT NULL,
    allotted   bigint NOT NULL,
    outcome    text NOT NULL CHECK (outcome IN ('MATCHED', 'ADJUSTED', 'UNKNOWN_SKU',
                                                'BELOW_ALLOTTED', 'DUPLICATE_SKU')),
    PRIMARY KEY (count_id, line)
);
