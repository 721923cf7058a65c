-- Virtual code pools (issue 15 item 2). An item's codes are either made by Surge at commit
-- (GENERATED, redemptions.redemption_code, as before) or taken from a pool the operator
-- loaded (POOL): one code per redemption, taken by commit_redemptions() in the same
-- transaction that commits the redemption (flashsale/sql/commit_redemptions.sql).
ALTER TABLE items ADD COLUMN code_source text NOT NULL DEFAULT 'GENERATED'
    CHECK (code_source IN ('GENERATED', 'POOL'));

-- One row per loaded code. Its life: AVAILABLE (in the pool) -> ISSUED (to a redemption)
-- -> CONSUMED (by a merchant), or ISSUED -> REVOKED (its redemption was cancelled; a
-- revoked code is never issued again: the member may have seen it).
CREATE TABLE item_codes (
    id            bigserial PRIMARY KEY,
    item_id       uuid NOT NULL REFERENCES items (id),
    -- 1..128 printable characters, no whitespace (inventory/codes.py checks it first).
    code          text NOT NULL
        CHECK (char_length(code) BETWEEN 1 AND 128 AND code !~ '[[:space:][:cntrl:]]'),
    status        text NOT NULL DEFAULT 'AVAILABLE'
        CHECK (status IN ('AVAILABLE', 'ISSUED', 'CONSUMED', 'REVOKED')),
    -- The redemption it was issued to: one code per redemption, never two.
    redemption_id uuid UNIQUE REFERENCES redemptions (id),
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    issued_at     timestamptz,
    -- The merchant's consume: who, when, and the request that did it (a repeat of that
    -- request answers the same; any other is ALREADY_CONSUMED).
    consumed_at   timestamptz,
    merchant_id   text,
    consume_request_id text,
    revoked_at    timestamptz,
    -- Unique per item: the last word against a code loaded twice (two items may share a
    -- code string: they are different goods).
    CONSTRAINT item_codes_unique UNIQUE (item_id, code),
    CONSTRAINT item_codes_issued_has_redemption
        CHECK ((status = 'AVAILABLE') = (redemption_id IS NULL)),
    CONSTRAINT item_codes_consumed_has_request
        CHECK ((status = 'CONSUMED') = (consume_request_id IS NOT NULL))
);
-- The pool's free codes in load order: what the commit takes (FOR UPDATE SKIP LOCKED).
CREATE INDEX item_codes_available ON item_codes (item_id, id) WHERE status = 'AVAILABLE';
-- GetCodePool's counts.
CREATE INDEX item_codes_by_status ON item_codes (item_id, status);
