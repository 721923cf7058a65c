-- The truth. Every invariant of DESIGN-NOTES that PostgreSQL can hold, it holds here by
-- itself (CHECK, UNIQUE, conditional updates), whatever Redis says.

CREATE TABLE items (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sku           text NOT NULL UNIQUE,
    name          text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('PHYSICAL', 'VIRTUAL', 'SERVICE')),
    -- Units not yet allotted to a campaign.
    stock_on_hand bigint NOT NULL CHECK (stock_on_hand >= 0),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stock_adjustments (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    item_id         uuid NOT NULL REFERENCES items (id),
    delta           bigint NOT NULL CHECK (delta <> 0),
    reason          text NOT NULL,
    idempotency_key text NOT NULL,
    stock_after     bigint NOT NULL CHECK (stock_after >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (item_id, idempotency_key)
);

CREATE TABLE members (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    display_name    text NOT NULL,
    external_ref    text UNIQUE,
    frozen          boolean NOT NULL DEFAULT false,
    -- Posted points; equals the sum of the member's ledger entries.
    points_balance  bigint NOT NULL DEFAULT 0 CHECK (points_balance >= 0),
    -- Points of redemptions waiting for payment (pending, not yet posted).
    points_held     bigint NOT NULL DEFAULT 0 CHECK (points_held >= 0),
    -- Bumped on every change Redis mirrors, so Redis applies only newer states.
    version         bigint NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT members_no_overdraft CHECK (points_held <= points_balance)
);

-- Append-only: balance = sum(amount). Kinds cover the whole ledger to come.
CREATE TABLE ledger_entries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    member_id       uuid NOT NULL REFERENCES members (id),
    kind            text NOT NULL CHECK (kind IN ('earn', 'redeem', 'refund', 'expire',
                                                  'transfer', 'adjust', 'reversal')),
    amount          bigint NOT NULL CHECK (amount <> 0),
    balance_after   bigint NOT NULL CHECK (balance_after >= 0),
    reference       text NOT NULL,
    reason          text NOT NULL,
    -- Set for caller-keyed entries (earning); NULLs never collide.
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (member_id, idempotency_key)
);
CREATE INDEX ledger_entries_member ON ledger_entries (member_id, created_at);

CREATE TABLE campaigns (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    item_id          uuid NOT NULL REFERENCES items (id),
    name             text NOT NULL,
    units_allotted   integer NOT NULL CHECK (units_allotted > 0),
    units_committed  integer NOT NULL DEFAULT 0 CHECK (units_committed >= 0),
    -- Units of redemptions waiting for payment.
    units_held       integer NOT NULL DEFAULT 0 CHECK (units_held >= 0),
    points_price     bigint NOT NULL CHECK (points_price >= 0),
    cash_price_cents bigint NOT NULL CHECK (cash_price_cents >= 0),
    per_member_limit integer NOT NULL CHECK (per_member_limit > 0),
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    version          bigint NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT campaigns_no_over_redemption
        CHECK (units_committed + units_held <= units_allotted),
    CONSTRAINT campaigns_window CHECK (ends_at > starts_at),
    CONSTRAINT campaigns_has_price CHECK (points_price > 0 OR cash_price_cents > 0)
);
CREATE INDEX campaigns_window_idx ON campaigns (ends_at, starts_at);

-- Units each member has taken (committed + waiting for payment) per campaign. The limit
-- is copied from the campaign so a plain CHECK can hold it.
CREATE TABLE campaign_members (
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    member_id   uuid NOT NULL REFERENCES members (id),
    units_taken integer NOT NULL CHECK (units_taken >= 0),
    unit_limit  integer NOT NULL,
    version     bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (campaign_id, member_id),
    CONSTRAINT campaign_members_limit CHECK (units_taken <= unit_limit)
);

CREATE TABLE redemptions (
    id                uuid PRIMARY KEY,
    member_id         uuid NOT NULL REFERENCES members (id),
    campaign_id       uuid NOT NULL REFERENCES campaigns (id),
    quantity          integer NOT NULL CHECK (quantity > 0),
    points_total      bigint NOT NULL CHECK (points_total >= 0),
    cash_total_cents  bigint NOT NULL CHECK (cash_total_cents >= 0),
    status            text NOT NULL
        CHECK (status IN ('PENDING_PAYMENT', 'COMMITTED', 'CANCELLED', 'EXPIRED')),
    idempotency_key   text NOT NULL,
    -- Fingerprint of the request, to tell a replay from a reused key.
    request_hash      text NOT NULL,
    shipping_address  jsonb,
    redemption_code   text UNIQUE,
    payment_due_at    timestamptz,
    payment_reference text,
    cancel_reason     text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- Exactly once: one key, one redemption, ever. Keys are scoped to the member.
    UNIQUE (member_id, idempotency_key),
    CONSTRAINT redemptions_pending_has_due
        CHECK (status <> 'PENDING_PAYMENT' OR payment_due_at IS NOT NULL)
);
CREATE INDEX redemptions_member_page ON redemptions (member_id, created_at DESC, id DESC);
CREATE INDEX redemptions_campaign ON redemptions (campaign_id, created_at);
CREATE INDEX redemptions_payment_due ON redemptions (payment_due_at)
    WHERE status = 'PENDING_PAYMENT';
