-- The outbox: every state change other systems care about (a redemption committed, shipped,
-- returned; points earned or spent; stock adjusted; a campaign sold out) writes one row here
-- in the same transaction as the change (events/sql/events.sql append_event), so the event
-- and the change commit together or not at all. WatchEvents replays rows by sequence and
-- then follows new ones (events/ package).
CREATE TABLE events (
    sequence    bigserial PRIMARY KEY,
    -- The writing transaction's id: sequences are handed out before commit, so a row with a
    -- lower sequence can become visible after one with a higher sequence. A reader only
    -- hands out rows whose transaction is older than every transaction still running
    -- (pg_snapshot_xmin), so a consumer resuming after a sequence never skips one.
    txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    -- PostgreSQL's clock when the row was written.
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Dotted, lower case: 'redemption.committed', 'points.earned' (events/model.py).
    type        text NOT NULL CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),
    -- What the event is about: 'redemption', 'member', 'item' or 'campaign', and its id.
    subject_kind text NOT NULL,
    subject_id  text NOT NULL,
    -- The credential's subject for an operator's or warehouse's change; NULL for the
    -- service's own (a member's redemption, a sweeper expiry).
    actor       text,
    payload     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_by_type ON events (type, sequence);
