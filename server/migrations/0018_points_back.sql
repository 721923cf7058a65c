-- Points back during events (issue 16 item 4; flashsale/points_back.py, docs/design.md
-- "Points back").
--
-- A campaign may give back a percentage of the points a redemption paid, as a new earned
-- lot posted in the same transaction as the commit (or the payment's confirmation) and
-- taken back if the redemption is cancelled or returned. 100 = every point paid comes back;
-- the bound 1000 (ten times the points paid) keeps floor(points_total x percent / 100)
-- far inside bigint for any price (points_total <= 10^12 x quantity) and stops a typo
-- from minting points without limit. Existing campaigns give nothing back (0).
ALTER TABLE campaigns
    ADD COLUMN points_back_percent integer NOT NULL DEFAULT 0
        CONSTRAINT campaigns_points_back_percent CHECK (points_back_percent BETWEEN 0 AND 1000);

-- The points given back, decided at admission from the locked campaign row (DESIGN-NOTES,
-- invariant 12): posted with the commit, or for points + cash when the payment is
-- confirmed. It stays as decided after a cancel or a return (the reversal is a ledger
-- entry of its own). Existing redemptions got none.
ALTER TABLE redemptions
    ADD COLUMN points_back bigint NOT NULL DEFAULT 0
        CONSTRAINT redemptions_points_back CHECK (points_back >= 0);
