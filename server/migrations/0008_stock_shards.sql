-- A hot campaign's allotment may be split across K Redis hash slots (stock shards,
-- flashsale/shards.py). PostgreSQL's guards stay per campaign: this column only tells the
-- gate how many slots hold the campaign's units. Fixed at creation.
ALTER TABLE campaigns ADD COLUMN stock_shards integer NOT NULL DEFAULT 1
    CHECK (stock_shards BETWEEN 1 AND 64);
