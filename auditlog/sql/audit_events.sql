-- audit_events is append-only: rows are inserted in the transaction of the change they
-- record (auditlog/store.py) and never changed or removed. The service never issues an
-- UPDATE or DELETE on it; this trigger makes one fail loudly instead of rewriting history
-- (a mistake in a later code path, or a hand-written fix in psql). It guards against
-- mistakes, not against the table's owner, who can drop the trigger; TRUNCATE is left to the
-- owner (the tests empty the table with it).
--
-- A trigger needs its function, which a numbered migration may not define
-- (server/migrate.py), so both live here; `surge migrate` applies this file after the
-- migrations that create the table, and again whenever it changes.
CREATE OR REPLACE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE OR REPLACE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
