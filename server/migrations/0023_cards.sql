-- Member cards (issue 17 item 4; README "Member cards"). Card types, batches of sequential
-- numbers issued for printing, and the cards themselves. The rules are in cards/; the
-- constraints below are the last word whatever the code does: a number exists once
-- (PRIMARY KEY: two batches can never overlap, even if the per-type sequence were wrong),
-- a card's state and its columns agree, and a batch's range stays inside its type's serials.

CREATE TABLE card_types (
    code         text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9_-]{1,64}$'),
    name         text NOT NULL CHECK (name <> ''),
    -- A tier name of SURGE_TIERS, applied as the member's manual tier floor on opening;
    -- NULL: none. (Points multipliers per card type are not here: earning owns them.)
    default_tier text,
    -- The digits every number of this type starts with; no type's prefix starts another's.
    prefix       text NOT NULL UNIQUE CHECK (prefix ~ '^[0-9]{1,8}$'),
    -- The next serial to issue, advanced under this row's lock by each batch.
    next_serial  bigint NOT NULL DEFAULT 0 CHECK (next_serial >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL DEFAULT ''
);

CREATE TABLE card_batches (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    card_type    text NOT NULL REFERENCES card_types (code) ON DELETE CASCADE,
    request_id   text NOT NULL UNIQUE CHECK (request_id <> ''),
    first_serial bigint NOT NULL CHECK (first_serial >= 0),
    last_serial  bigint NOT NULL,
    first_number text NOT NULL,
    last_number  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL DEFAULT '',
    CONSTRAINT card_batches_range CHECK (last_serial >= first_serial)
);
CREATE INDEX card_batches_type ON card_batches (card_type, first_serial);

CREATE TABLE cards (
    number      text PRIMARY KEY CHECK (number ~ '^[0-9]{16}$'),
    card_type   text NOT NULL REFERENCES card_types (code) ON DELETE CASCADE,
    batch_id    uuid NOT NULL REFERENCES card_batches (id) ON DELETE CASCADE,
    state       text NOT NULL DEFAULT 'ISSUED'
        CHECK (state IN ('ISSUED', 'ACTIVE', 'LOST', 'REPLACED')),
    member_id   uuid REFERENCES members (id) ON DELETE CASCADE,
    opened_at   timestamptz,
    lost_at     timestamptz,
    lost_reason text,
    replaced_by text REFERENCES cards (number),
    replaced_at timestamptz,
    -- An issued card has no owner; every other state has one, opened at a time.
    CONSTRAINT cards_owner CHECK ((state = 'ISSUED') = (member_id IS NULL)),
    CONSTRAINT cards_opened CHECK ((member_id IS NULL) = (opened_at IS NULL)),
    CONSTRAINT cards_lost CHECK (state <> 'LOST' OR lost_at IS NOT NULL),
    CONSTRAINT cards_replaced CHECK ((state = 'REPLACED') = (replaced_by IS NOT NULL)),
    CONSTRAINT cards_not_itself CHECK (replaced_by <> number)
);
CREATE INDEX cards_batch ON cards (batch_id, number);
CREATE INDEX cards_member ON cards (member_id) WHERE member_id IS NOT NULL;
-- Taking a replacement from a type's stock: its lowest issued number.
CREATE INDEX cards_issued ON cards (card_type, number) WHERE state = 'ISSUED';
