-- append_event: the one way any domain writes to the outbox (server/migrations/0009_events.sql),
-- inside the transaction of the change it records. Set-based writers (commit_redemptions)
-- may INSERT INTO events directly with the same columns.
CREATE OR REPLACE FUNCTION append_event(
    p_type text, p_subject_kind text, p_subject_id text, p_payload jsonb, p_actor text DEFAULT NULL
) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO events (type, subject_kind, subject_id, payload, actor)
    VALUES (p_type, p_subject_kind, p_subject_id, coalesce(p_payload, '{}'::jsonb), p_actor)
    RETURNING sequence
$$;

-- The wake-up for WatchEvents (events/wakeups.py): one NOTIFY per writing statement, sent
-- when its transaction commits (PostgreSQL folds the same channel and payload into one
-- per transaction). Only a hint that rows may be readable: readers always read the table,
-- and poll when no notification comes.
CREATE OR REPLACE FUNCTION events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('surge_events', '');
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
