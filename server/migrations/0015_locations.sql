-- Locations (issue 20 item 3, docs/inventory.md): transfers of an item's stock between
-- locations, and where an adjustment landed. The movements themselves are in
-- stock_movements (migration 0013); these rows keep the idempotency keys and what each
-- request asked, so a replay returns the saved result and a reused key is refused.

-- One row per TransferStock: its movements carry the reference 'transfer:<id>'.
CREATE TABLE stock_transfers (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    item_id          uuid NOT NULL REFERENCES items (id),
    from_location_id uuid NOT NULL REFERENCES locations (id),
    to_location_id   uuid NOT NULL REFERENCES locations (id),
    quantity         bigint NOT NULL CHECK (quantity > 0),
    reason           text NOT NULL,
    idempotency_key  text NOT NULL,
    actor            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (item_id, idempotency_key),
    CHECK (from_location_id <> to_location_id)
);

-- What an AdjustStock named, compared on a replay of its key: the location (NULL: none
-- named, the default-first rule) and the movement's kind. Earlier rows were all plain
-- adjustments with no location named.
ALTER TABLE stock_adjustments
    ADD COLUMN location_id   uuid REFERENCES locations (id),
    ADD COLUMN movement_kind text NOT NULL DEFAULT 'adjusted'
        CHECK (movement_kind IN ('adjusted', 'received', 'written_off'));
