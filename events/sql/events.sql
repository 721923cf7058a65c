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
