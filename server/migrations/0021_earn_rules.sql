-- Earn rules and pending points (issue 17 items 1 and 2; README "Earn rules", "Pending
-- points"). A rule adds points to a purchase's earn (a multiplier of the base points or a
-- fixed bonus) when its conditions hold; its budget and per-member cap are guarded here,
-- whatever the caller computed: the CHECKs make giving more than a budget impossible.

CREATE TABLE earn_rules (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name             text NOT NULL CHECK (name <> ''),
    kind             text NOT NULL CHECK (kind IN ('MULTIPLIER', 'BONUS')),
    -- MULTIPLIER: the purchase earns base x multiplier (the rule gives the difference).
    multiplier       numeric CHECK (multiplier > 0 AND multiplier <= 100),
    -- BONUS: a fixed number of points.
    bonus_points     bigint CHECK (bonus_points > 0),
    days_of_month    integer[] NOT NULL DEFAULT '{}',
    weekdays         integer[] NOT NULL DEFAULT '{}',
    hours            integer[] NOT NULL DEFAULT '{}',
    starts_at        timestamptz,
    ends_at          timestamptz,
    tiers            text[] NOT NULL DEFAULT '{}',
    min_amount_cents bigint NOT NULL DEFAULT 0 CHECK (min_amount_cents >= 0),
    channels         text[] NOT NULL DEFAULT '{}',
    categories       text[] NOT NULL DEFAULT '{}',
    time_zone        text NOT NULL,
    -- Total points the rule may give (NULL: no budget) and what it has given.
    budget_points    bigint CHECK (budget_points > 0),
    given_points     bigint NOT NULL DEFAULT 0 CHECK (given_points >= 0),
    per_member_cap   bigint CHECK (per_member_cap > 0),
    priority         integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text NOT NULL DEFAULT '',
    ended_at         timestamptz,
    CONSTRAINT earn_rules_kind CHECK ((kind = 'MULTIPLIER') = (multiplier IS NOT NULL)
                                      AND (kind = 'BONUS') = (bonus_points IS NOT NULL)),
    CONSTRAINT earn_rules_budget CHECK (budget_points IS NULL OR given_points <= budget_points),
    CONSTRAINT earn_rules_window CHECK (starts_at IS NULL OR ends_at IS NULL
                                        OR starts_at < ends_at)
);
-- One live rule per name: "the double-points day" names one rule and one budget.
CREATE UNIQUE INDEX earn_rules_live_name ON earn_rules (name) WHERE ended_at IS NULL;

-- What each rule gave each member, against its per-member cap.
CREATE TABLE earn_rule_members (
    rule_id   uuid NOT NULL REFERENCES earn_rules (id) ON DELETE CASCADE,
    member_id uuid NOT NULL REFERENCES members (id),
    points    bigint NOT NULL CHECK (points >= 0),
    PRIMARY KEY (rule_id, member_id)
);

-- Every entry names the rules that produced it (empty for today's entries).
ALTER TABLE ledger_entries ADD COLUMN earn_rule_ids text[] NOT NULL DEFAULT '{}';

-- A purchase's earn split: what the program gave (base) and what rules added, and when
-- its points become spendable (NULL: at once, as every purchase before this migration).
ALTER TABLE purchases
    ADD COLUMN base_points bigint,
    ADD COLUMN earn_rule_ids text[] NOT NULL DEFAULT '{}',
    ADD COLUMN rule_points jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN pending_until timestamptz,
    ADD COLUMN activated_at timestamptz;
UPDATE purchases SET base_points = points;

-- Pending purchases waiting for activation (the leader's job takes the due ones in chunks).
CREATE INDEX purchases_pending ON purchases (pending_until)
    WHERE pending_until IS NOT NULL AND activated_at IS NULL;
