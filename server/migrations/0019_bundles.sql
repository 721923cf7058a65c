-- Bundles (issue 16, docs/inventory.md "Bundles"): a campaign that sells a set of items,
-- each with a quantity, as one unit at one price. Its allotment is counted in bundles;
-- each part's units sit in campaign_stock per (campaign, item, location).
--
-- A campaign with rows here is a bundle campaign. campaigns.item_id stays NOT NULL: for
-- a bundle it is the first part's item (the lead item), so every reader of a campaign's
-- item keeps working.
CREATE TABLE campaign_bundle_parts (
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    item_id     uuid NOT NULL REFERENCES items (id),
    -- The order the operator gave the parts in (1 = the lead item).
    position    smallint NOT NULL CHECK (position >= 1),
    -- Units of the item in one bundle.
    quantity    integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (campaign_id, item_id),
    UNIQUE (campaign_id, position)
);

-- Every campaign's parts: a bundle's rows, or for any other campaign its one item, one
-- unit per unit sold. What stock_redeem, stock_release and the audit join on.
CREATE VIEW campaign_parts AS
SELECT c.id AS campaign_id, coalesce(b.item_id, c.item_id) AS item_id,
       coalesce(b.quantity, 1) AS quantity
  FROM campaigns c LEFT JOIN campaign_bundle_parts b ON b.campaign_id = c.id;

-- A campaign's allotment per location gets the item dimension. Today's rows are the
-- campaign's one item. Not a rolling upgrade: a server of the previous version inserts
-- campaign_stock rows without item_id (stop every server, migrate, start).
ALTER TABLE campaign_stock ADD COLUMN item_id uuid REFERENCES items (id);
UPDATE campaign_stock cs SET item_id = c.item_id FROM campaigns c WHERE c.id = cs.campaign_id;
ALTER TABLE campaign_stock ALTER COLUMN item_id SET NOT NULL;
ALTER TABLE campaign_stock DROP CONSTRAINT campaign_stock_pkey,
    ADD PRIMARY KEY (campaign_id, item_id, location_id);
ALTER TABLE campaign_stock DROP CONSTRAINT campaign_stock_campaign_id_position_key,
    ADD CONSTRAINT campaign_stock_campaign_id_item_id_position_key
        UNIQUE (campaign_id, item_id, position);
