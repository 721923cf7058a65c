-- The points ledger: lots and their expiry, debt, tiers, freezes, beneficiaries, transfers,
-- purchase earnings and their reversals. The ledger's functions (post_entry, spend_lots, ...)
-- live in points/sql/ and commit_redemptions in flashsale/sql/: `surge migrate` applies
-- them after the numbered migrations.
--
-- Invariants (surge audit checks them):
--   members.points_balance = sum(ledger_entries.amount) = sum(point_lots.remaining)
--   members.points_debt    = sum(ledger_entries.debt_change) >= 0
-- Every writer holds the member's row lock (members by id, after campaigns) while it
-- touches that member's lots, so lots need no locks of their own.

-- -- Members ---------------------------------------------------------------------------
ALTER TABLE members
    -- Points a reversal could not take back (already spent); repaid first from credits.
    ADD COLUMN points_debt bigint NOT NULL DEFAULT 0 CHECK (points_debt >= 0),
    -- Points ever earned (earnings less their reversals): the redemption threshold's measure.
    ADD COLUMN lifetime_earned bigint NOT NULL DEFAULT 0 CHECK (lifetime_earned >= 0),
    -- lifetime_earned >= the program's threshold, kept by the server; Redis mirrors it.
    ADD COLUMN redemption_eligible boolean NOT NULL DEFAULT true,
    ADD COLUMN frozen_reason text,
    -- The tier reached (NULL: the ladder's first), until when it is kept, and an
    -- operator's floor.
    ADD COLUMN tier text,
    ADD COLUMN tier_valid_until timestamptz,
    ADD COLUMN manual_tier text,
    ADD COLUMN tier_evaluated_at timestamptz;

UPDATE members m
   SET lifetime_earned = coalesce(
       (SELECT sum(l.amount) FROM ledger_entries l WHERE l.member_id = m.id AND l.kind = 'earn'),
       0);

-- -- Ledger entries ----------------------------------------------------------------------
ALTER TABLE ledger_entries
    -- Statement order: entries of one transaction share created_at.
    ADD COLUMN seq bigserial,
    -- Change to the member's debt (a reversal's shortfall > 0, a repayment < 0).
    ADD COLUMN debt_change bigint NOT NULL DEFAULT 0,
    ADD COLUMN debt_after bigint NOT NULL DEFAULT 0 CHECK (debt_after >= 0),
    -- Idempotency keys are scoped by operation ('' = EarnPoints, 'task', 'adjust').
    ADD COLUMN key_scope text NOT NULL DEFAULT '',
    ADD COLUMN operator_id text,
    -- The other member of a transfer.
    ADD COLUMN counterparty_id uuid;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_amount_check;
ALTER TABLE ledger_entries
    ADD CONSTRAINT ledger_entries_moves CHECK (amount <> 0 OR debt_change <> 0);
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_member_id_idempotency_key_key;
ALTER TABLE ledger_entries
    ADD CONSTRAINT ledger_entries_key UNIQUE (member_id, key_scope, idempotency_key);
CREATE INDEX ledger_entries_statement ON ledger_entries (member_id, seq);
CREATE INDEX ledger_entries_period ON ledger_entries (created_at);

-- -- Lots --------------------------------------------------------------------------------
-- Each credit is a lot with an expiry; spends take from lots soonest expiry first
-- (never-expiring last). A lot is valid while now < expires_at (NULL: never expires).
CREATE TABLE point_lots (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    member_id   uuid NOT NULL REFERENCES members (id),
    source      text NOT NULL CHECK (source IN ('earn', 'adjust', 'transfer', 'opening')),
    amount      bigint NOT NULL CHECK (amount > 0),
    remaining   bigint NOT NULL CHECK (remaining >= 0),
    -- Points of this lot that count toward tiers (earned points less their reversals).
    qualifying  bigint NOT NULL DEFAULT 0 CHECK (qualifying >= 0),
    earned_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    reference   text NOT NULL,
    CONSTRAINT point_lots_remaining CHECK (remaining <= amount)
);
CREATE INDEX point_lots_spend ON point_lots (member_id, expires_at, id) WHERE remaining > 0;
CREATE INDEX point_lots_due ON point_lots (expires_at) WHERE remaining > 0;
CREATE INDEX point_lots_qualifying ON point_lots (member_id, earned_at) WHERE qualifying > 0;

-- What every spend took from which lot (> 0) and what a refund gave back (< 0).
CREATE TABLE lot_spends (
    id         bigserial PRIMARY KEY,
    lot_id     uuid NOT NULL REFERENCES point_lots (id),
    member_id  uuid NOT NULL,
    reference  text NOT NULL,
    points     bigint NOT NULL CHECK (points <> 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lot_spends_reference ON lot_spends (member_id, reference);

-- Balances from before lots existed: one never-expiring opening lot each.
INSERT INTO point_lots (member_id, source, amount, remaining, reference)
SELECT id, 'opening', points_balance, points_balance, 'opening balance'
  FROM members WHERE points_balance > 0;

-- -- Purchases, reversals, beneficiaries, transfers, member actions ---------------------
CREATE TABLE purchases (
    member_id       uuid NOT NULL REFERENCES members (id),
    event_id        text NOT NULL,
    amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
    points          bigint NOT NULL CHECK (points >= 0),
    tier            text NOT NULL,
    multiplier      numeric NOT NULL,
    lot_id          uuid REFERENCES point_lots (id),
    ledger_entry_id uuid,
    reversed_cents  bigint NOT NULL DEFAULT 0,
    reversed_points bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, event_id),
    CONSTRAINT purchases_reversed CHECK (reversed_cents BETWEEN 0 AND amount_cents
                                         AND reversed_points BETWEEN 0 AND points)
);

CREATE TABLE purchase_reversals (
    member_id         uuid NOT NULL,
    event_id          text NOT NULL,
    purchase_event_id text NOT NULL,
    amount_cents      bigint NOT NULL CHECK (amount_cents > 0),
    -- The amount the request named (0 = all that was left), to recognise a replay.
    requested_cents   bigint NOT NULL,
    points            bigint NOT NULL CHECK (points >= 0),
    taken             bigint NOT NULL CHECK (taken >= 0),
    debt              bigint NOT NULL CHECK (debt >= 0),
    ledger_entry_id   uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, event_id),
    FOREIGN KEY (member_id, purchase_event_id) REFERENCES purchases (member_id, event_id),
    CONSTRAINT purchase_reversals_sum CHECK (taken + debt = points)
);

CREATE TABLE beneficiaries (
    member_id      uuid NOT NULL REFERENCES members (id),
    beneficiary_id uuid NOT NULL REFERENCES members (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, beneficiary_id),
    CONSTRAINT beneficiaries_not_self CHECK (member_id <> beneficiary_id)
);

CREATE TABLE transfers (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    from_member_id  uuid NOT NULL REFERENCES members (id),
    to_member_id    uuid NOT NULL REFERENCES members (id),
    points          bigint NOT NULL CHECK (points > 0),
    idempotency_key text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (from_member_id, idempotency_key)
);

-- Freezes, unfreezes and tier changes, with who and why.
CREATE TABLE member_actions (
    id          bigserial PRIMARY KEY,
    member_id   uuid NOT NULL REFERENCES members (id),
    action      text NOT NULL
        CHECK (action IN ('freeze', 'unfreeze', 'manual_tier', 'tier')),
    detail      text NOT NULL DEFAULT '',
    reason      text NOT NULL,
    operator_id text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX member_actions_member ON member_actions (member_id, id);

-- Last run of periodic ledger work shared by every server process (a lease).
CREATE TABLE ledger_jobs (
    name        text PRIMARY KEY,
    last_run_at timestamptz NOT NULL
);
