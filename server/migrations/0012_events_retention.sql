-- How far the outbox has been pruned (events/retention.py): every sequence at or below
-- `through` is gone. WatchEvents refuses an after_sequence below it (EVENTS_PRUNED) rather
-- than skip what a consumer never saw; a sequence missing above it is a rolled-back write or
-- one still running (events/feed.py). One row, created here.
CREATE TABLE events_pruned (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    through bigint NOT NULL DEFAULT 0 CHECK (through >= 0)
);
INSERT INTO events_pruned DEFAULT VALUES;
-- The pruning job finds the newest row past retention by time.
CREATE INDEX events_by_time ON events (occurred_at);
