-- The physical lifecycle after COMMITTED (flashsale/fulfilment.py, docs/fulfilment.md):
-- PACKING -> SHIPPED -> DELIVERED -> RETURN_REQUESTED -> RETURNED | RETURN_REJECTED, the
-- facts each step records on the redemption, and the history of the steps.
-- Every added column is nullable without a default, so adding it rewrites no row and the
-- group commit (commit_redemptions, which names its columns) is untouched.
--
-- The constraints are added NOT VALID: checking them would scan every redemption while this
-- transaction holds the table's exclusive lock (the group commit waits). Nothing to check:
-- every existing row passed the narrower status CHECK this one replaces, and the new
-- columns are NULL in every existing row. New and updated rows are checked as usual; run
-- `ALTER TABLE redemptions VALIDATE CONSTRAINT ...` later, online, to mark them valid.
ALTER TABLE redemptions DROP CONSTRAINT redemptions_status_check;
ALTER TABLE redemptions ADD CONSTRAINT redemptions_status_check CHECK (status IN (
    'PENDING_PAYMENT', 'COMMITTED', 'CANCELLED', 'EXPIRED', 'PACKING', 'SHIPPED', 'DELIVERED',
    'RETURN_REQUESTED', 'RETURNED', 'RETURN_REJECTED')) NOT VALID;

ALTER TABLE redemptions
    -- MarkShipped: free text, length-limited (the warehouse's carriers are not a fixed list).
    ADD COLUMN carrier          text,
    ADD COLUMN tracking_number  text,
    ADD COLUMN shipped_at       timestamptz,
    ADD COLUMN delivered_at     timestamptz,
    -- RequestReturn: the member's reason; AcceptReturn / RejectReturn: the outcome.
    ADD COLUMN return_requested_at timestamptz,
    ADD COLUMN return_reason    text,
    ADD COLUMN return_resolved_at timestamptz,
    -- RETURNED only: 'RESTOCK' (units back to the item's stock) or 'WRITE_OFF'.
    ADD COLUMN return_disposition text CHECK (return_disposition IN ('RESTOCK', 'WRITE_OFF')),
    ADD COLUMN cash_refund_cents bigint,
    -- RETURN_REJECTED only: why (required).
    ADD COLUMN return_rejection text,
    -- An exchange: the replacement redemption names the one it replaces, and back. One
    -- replacement per redemption (UNIQUE), so a repeated AcceptReturn cannot make two.
    ADD COLUMN replacement_of   uuid UNIQUE REFERENCES redemptions (id),
    ADD COLUMN replaced_by      uuid REFERENCES redemptions (id),
    ADD CONSTRAINT redemptions_shipment_lengths
        CHECK (length(carrier) <= 64 AND length(tracking_number) <= 64) NOT VALID,
    ADD CONSTRAINT redemptions_cash_refund_within_price
        CHECK (cash_refund_cents IS NULL
               OR (cash_refund_cents >= 0 AND cash_refund_cents <= cash_total_cents)) NOT VALID,
    ADD CONSTRAINT redemptions_shipped_has_shipment
        CHECK (status NOT IN ('SHIPPED', 'DELIVERED') OR shipped_at IS NOT NULL) NOT VALID,
    ADD CONSTRAINT redemptions_returned_has_disposition
        CHECK (status <> 'RETURNED' OR return_disposition IS NOT NULL) NOT VALID,
    ADD CONSTRAINT redemptions_rejected_has_reason
        CHECK (status <> 'RETURN_REJECTED' OR return_rejection IS NOT NULL) NOT VALID;

-- One row per transition, written in the transition's transaction. The first state
-- (COMMITTED or PENDING_PAYMENT at created_at) is not stored: the group commit is the hot
-- path and writes nothing here; readers synthesize it from the redemption row.
CREATE TABLE redemption_history (
    id            bigserial PRIMARY KEY,
    redemption_id uuid NOT NULL REFERENCES redemptions (id),
    state         text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    -- The credential's subject ('system' for the sweeper), or 'member:<id>' for a member's
    -- own request through the gateway.
    actor         text NOT NULL CHECK (actor <> ''),
    note          text NOT NULL DEFAULT '',
    details       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX redemption_history_by_redemption ON redemption_history (redemption_id, id);
