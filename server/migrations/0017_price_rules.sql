-- Price rules (issue 16 item 1): a campaign's time-windowed prices. Which rule is in force
-- (tier-specific before all-tier, windows of one scope never overlapping) is decided in
-- flashsale/pricing.py; the CHECKs below are the last word on each rule's form.

CREATE TABLE campaign_price_rules (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    campaign_id  uuid NOT NULL REFERENCES campaigns (id),
    -- The rule's place in the campaign's list, as the operator gave it.
    position     integer NOT NULL CHECK (position >= 0),
    name         text NOT NULL CHECK (name <> ''),
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    -- NULL: every member; else only members holding this tier (SURGE_TIERS) at admission.
    tier         text CHECK (tier <> ''),
    -- One of: a percentage of the campaign's points price (rounded up to a whole point),
    -- or a fixed points price per unit. The cash price is never changed by a rule.
    percent      integer CHECK (percent BETWEEN 1 AND 100),
    points_price bigint CHECK (points_price >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Set when UpdateCampaign replaced the campaign's rules: kept, since redemptions name
    -- the rule that priced them.
    replaced_at  timestamptz,
    CONSTRAINT campaign_price_rules_one_price CHECK ((percent IS NULL) <> (points_price IS NULL)),
    CONSTRAINT campaign_price_rules_window CHECK (ends_at > starts_at)
);
CREATE INDEX campaign_price_rules_campaign ON campaign_price_rules (campaign_id, position)
    WHERE replaced_at IS NULL;

-- The price a redemption was admitted at: its list price (the campaign's points price times
-- the quantity) and the rule that discounted it. NULL list_points_total (rows from before
-- this migration): the list price was the price paid, points_total.
ALTER TABLE redemptions
    ADD COLUMN list_points_total bigint CHECK (list_points_total >= 0),
    ADD COLUMN price_rule_id uuid REFERENCES campaign_price_rules (id);
