-- The stock ledger (issue 20, docs/inventory.md): every change of an item's stock is a
-- movement, stock lives in named locations, and a campaign's allotment is drawn from them.
--
-- Per (item, location) two balances, each the sum of its movements:
--   on_hand  - units physically there (a redeemed unit leaves at its commit);
--   allotted - of those, units reserved to campaigns and not yet redeemed (held ones too).
-- available = on_hand - allotted; items.stock_on_hand stays the item's available units
-- summed over its locations (what CreateCampaign and AdjustStock check, as before).
-- inventory/sql/stock.sql writes a movement and both balances together (stock_move);
-- `surge audit` checks that the balances are the sums (inventory/audit.py).

CREATE TABLE locations (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Lower-case, stable: what operators and CSV counts name a location by.
    code       text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The one location every item had before: stock not given a location lives here.
INSERT INTO locations (code, name) VALUES ('default', 'Default location');

CREATE TABLE stock_levels (
    item_id     uuid NOT NULL REFERENCES items (id),
    location_id uuid NOT NULL REFERENCES locations (id),
    on_hand     bigint NOT NULL CHECK (on_hand >= 0),
    allotted    bigint NOT NULL CHECK (allotted >= 0),
    PRIMARY KEY (item_id, location_id),
    -- Never more reserved to campaigns than is there.
    CONSTRAINT stock_levels_allotted_on_hand CHECK (allotted <= on_hand)
);

-- Append-only. No foreign keys: the group commit inserts here on the hot path, and a
-- foreign key's check would take a KEY SHARE lock on the item row that AdjustStock holds
-- FOR UPDATE (a lock-order inversion with stock_levels). stock_levels holds the keys; the
-- audit checks every movement adds up to its level.
CREATE TABLE stock_movements (
    id             bigserial PRIMARY KEY,
    item_id        uuid NOT NULL,
    location_id    uuid NOT NULL,
    kind           text NOT NULL,
    on_hand_delta  bigint NOT NULL,
    allotted_delta bigint NOT NULL,
    campaign_id    uuid,
    redemption_id  uuid,
    -- What else it belongs to: 'adjustment:<id>', 'count:<id>', 'transfer:<id>', ...
    reference      text,
    actor          text,
    reason         text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Each kind moves units one way only (docs/inventory.md has the table).
    CONSTRAINT stock_movements_kind CHECK (CASE kind
        WHEN 'received'        THEN on_hand_delta > 0 AND allotted_delta = 0
        WHEN 'adjusted'        THEN on_hand_delta <> 0 AND allotted_delta = 0
        WHEN 'counted'         THEN on_hand_delta <> 0 AND allotted_delta = 0
        WHEN 'written_off'     THEN on_hand_delta < 0 AND allotted_delta = 0
        WHEN 'transferred_out' THEN on_hand_delta < 0 AND allotted_delta = 0
        WHEN 'transferred_in'  THEN on_hand_delta > 0 AND allotted_delta = 0
        WHEN 'returned'        THEN on_hand_delta > 0 AND allotted_delta = 0
        WHEN 'allotted'        THEN on_hand_delta = 0 AND allotted_delta > 0
        WHEN 'released'        THEN on_hand_delta = 0 AND allotted_delta < 0
        -- From a campaign's allotment (allotted_delta = on_hand_delta), or an exchange's
        -- replacement taken from available stock (allotted_delta = 0).
        WHEN 'redeemed'        THEN on_hand_delta < 0
                                    AND allotted_delta IN (0, on_hand_delta)
        WHEN 'cancelled'       THEN on_hand_delta > 0 AND allotted_delta = on_hand_delta
        ELSE false END)
);
CREATE INDEX stock_movements_item ON stock_movements (item_id, id);
CREATE INDEX stock_movements_redemption ON stock_movements (redemption_id)
    WHERE redemption_id IS NOT NULL;
CREATE INDEX stock_movements_campaign ON stock_movements (campaign_id, id)
    WHERE campaign_id IS NOT NULL;

-- Where a campaign's units are: per location, the units allotted there not yet redeemed
-- (held ones included). A commit redeems from the campaign's locations in `position`
-- order; a release gives back in reverse. Sum over the campaign = units_allotted -
-- units_committed; sum over an (item, location) = stock_levels.allotted.
CREATE TABLE campaign_stock (
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    location_id uuid NOT NULL REFERENCES locations (id),
    position    integer NOT NULL,
    remaining   bigint NOT NULL CHECK (remaining >= 0),
    PRIMARY KEY (campaign_id, location_id),
    UNIQUE (campaign_id, position)
);

-- Today's data, at the default location. What history exists becomes movements: manual
-- adjustments, each campaign's allotment as it stands (an ended campaign's is what it
-- sold: EndCampaign gave the rest back), each sold redemption (an exchange's replacement
-- from available stock). One opening balance per item makes the sum equal to what is there
-- now (its initial stock, restocked returns and code loads had no record before).
CREATE TEMPORARY TABLE upgrade_movements ON COMMIT DROP AS
SELECT a.item_id, 'adjusted'::text AS kind, a.delta AS on_hand_delta, 0::bigint AS allotted_delta,
       NULL::uuid AS campaign_id, NULL::uuid AS redemption_id,
       'adjustment:' || a.id AS reference, a.reason, a.created_at
  FROM stock_adjustments a
UNION ALL
SELECT c.item_id, 'allotted', 0, c.units_allotted, c.id, NULL, NULL,
       'campaign allotment (before the stock ledger)', c.created_at
  FROM campaigns c WHERE c.units_allotted > 0
UNION ALL
SELECT c.item_id, 'redeemed', -r.quantity,
       CASE WHEN r.replacement_of IS NULL THEN -r.quantity ELSE 0 END,
       r.campaign_id, r.id, NULL, 'redemption (before the stock ledger)', r.created_at
  FROM redemptions r JOIN campaigns c ON c.id = r.campaign_id
 WHERE r.status IN ('COMMITTED', 'PACKING', 'SHIPPED', 'DELIVERED', 'RETURN_REQUESTED',
                    'RETURNED', 'RETURN_REJECTED');

INSERT INTO upgrade_movements
SELECT i.id, CASE WHEN o.delta > 0 THEN 'received' ELSE 'adjusted' END, o.delta, 0, NULL, NULL,
       NULL, 'opening balance (stock before the stock ledger)', i.created_at
  FROM items i
 CROSS JOIN LATERAL (
       SELECT i.stock_on_hand
              + coalesce((SELECT sum(c.units_allotted - c.units_committed)
                            FROM campaigns c WHERE c.item_id = i.id), 0)
              - coalesce((SELECT sum(u.on_hand_delta)
                            FROM upgrade_movements u WHERE u.item_id = i.id), 0) AS delta) o
 WHERE o.delta <> 0;

INSERT INTO stock_movements (item_id, location_id, kind, on_hand_delta, allotted_delta,
                             campaign_id, redemption_id, reference, actor, reason, created_at)
SELECT u.item_id, l.id, u.kind, u.on_hand_delta, u.allotted_delta, u.campaign_id,
       u.redemption_id, u.reference, 'migration:0013', u.reason, u.created_at
  FROM upgrade_movements u CROSS JOIN locations l
 WHERE l.code = 'default'
 ORDER BY u.created_at, u.kind;

INSERT INTO stock_levels (item_id, location_id, on_hand, allotted)
SELECT m.item_id, m.location_id, sum(m.on_hand_delta), sum(m.allotted_delta)
  FROM stock_movements m GROUP BY m.item_id, m.location_id;

INSERT INTO campaign_stock (campaign_id, location_id, position, remaining)
SELECT c.id, l.id, 1, c.units_allotted - c.units_committed
  FROM campaigns c CROSS JOIN locations l
 WHERE l.code = 'default';
