-- Lottery draws (issue 16 item 2; docs/lottery.md). A lottery costs points per draw, limits
-- draws per member per UTC day and in total, and draws one of its prizes by weight among
-- the prizes still in stock. The rules are in lottery/; the CHECKs below are the last word
-- on stock and limits whatever Redis says (lottery/sql/draws.sql re-checks them on locked
-- rows first, so a CHECK firing would be a bug, rolling its batch back).

CREATE TABLE lotteries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name             text NOT NULL CHECK (name <> ''),
    cost_points      bigint NOT NULL CHECK (cost_points > 0),
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    per_member_daily integer NOT NULL CHECK (per_member_daily > 0),
    per_member_total integer NOT NULL CHECK (per_member_total > 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text NOT NULL DEFAULT '',
    CONSTRAINT lotteries_window CHECK (starts_at < ends_at)
);

-- A prize: a GOOD (an item, with a finite stock) or NONE, the consolation ("no prize"),
-- exactly one per lottery, never out of stock (stock NULL = unlimited).
CREATE TABLE lottery_prizes (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    lottery_id  uuid NOT NULL REFERENCES lotteries (id) ON DELETE CASCADE,
    position    integer NOT NULL CHECK (position >= 0),
    name        text NOT NULL CHECK (name <> ''),
    kind        text NOT NULL CHECK (kind IN ('GOOD', 'NONE')),
    item_id     uuid REFERENCES items (id) ON DELETE CASCADE,
    -- The prize campaign that turns a won GOOD into a redemption (stage B); NULL for NONE.
    campaign_id uuid REFERENCES campaigns (id) ON DELETE CASCADE,
    weight      integer NOT NULL CHECK (weight > 0),
    stock       integer CHECK (stock >= 0),
    awarded     integer NOT NULL DEFAULT 0 CHECK (awarded >= 0),
    CONSTRAINT lottery_prizes_stock CHECK (stock IS NULL OR awarded <= stock),
    CONSTRAINT lottery_prizes_good_item CHECK ((kind = 'GOOD') = (item_id IS NOT NULL)),
    CONSTRAINT lottery_prizes_good_stock CHECK ((kind = 'GOOD') = (stock IS NOT NULL)),
    CONSTRAINT lottery_prizes_campaign CHECK (kind = 'GOOD' OR campaign_id IS NULL),
    UNIQUE (lottery_id, position)
);
CREATE UNIQUE INDEX lottery_prizes_one_consolation ON lottery_prizes (lottery_id)
    WHERE kind = 'NONE';

-- One row per draw that PostgreSQL accepted; the key is the member's, as a redemption's.
CREATE TABLE lottery_draws (
    id              uuid PRIMARY KEY,
    lottery_id      uuid NOT NULL REFERENCES lotteries (id) ON DELETE CASCADE,
    member_id       uuid NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    idempotency_key text NOT NULL,
    request_hash    text NOT NULL,
    prize_id        uuid NOT NULL REFERENCES lottery_prizes (id) ON DELETE CASCADE,
    cost_points     bigint NOT NULL CHECK (cost_points > 0),
    redemption_id   uuid REFERENCES redemptions (id) ON DELETE SET NULL,
    -- The UTC date of the draw: the per-member daily limit counts draws by it.
    day             date NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT lottery_draws_key UNIQUE (member_id, idempotency_key)
);
CREATE INDEX lottery_draws_lottery ON lottery_draws (lottery_id, member_id, created_at);

-- Per (lottery, member) counters, written only under the lottery's row lock, with the
-- limits copied in so a CHECK guards them (as campaign_members.unit_limit does).
CREATE TABLE lottery_members (
    lottery_id  uuid NOT NULL REFERENCES lotteries (id) ON DELETE CASCADE,
    member_id   uuid NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    draws_total integer NOT NULL CHECK (draws_total >= 0),
    total_limit integer NOT NULL,
    day         date NOT NULL,
    draws_day   integer NOT NULL CHECK (draws_day >= 0),
    day_limit   integer NOT NULL,
    PRIMARY KEY (lottery_id, member_id),
    CONSTRAINT lottery_members_total CHECK (draws_total <= total_limit),
    CONSTRAINT lottery_members_day CHECK (draws_day <= day_limit)
);

-- Stage B: a GOOD prize is delivered as a redemption of its own "prize campaign" (the
-- lottery's window, units_allotted = the prize's stock taken from the item's stock through
-- the stock ledger, price 0), so stock ledger, codes, events and fulfilment apply as to
-- any redemption. Redeem refuses such a campaign (flashsale/admission.py): its units are
-- won by a draw, paid for by the draw's cost. Today's campaigns are not prize campaigns.
ALTER TABLE campaigns ADD COLUMN lottery_prize boolean NOT NULL DEFAULT false;
ALTER TABLE campaigns DROP CONSTRAINT campaigns_has_price;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_has_price
    CHECK (lottery_prize OR points_price > 0 OR cash_price_cents > 0);
