-- The audit trail: every operator change (stock, campaigns, member state, points
-- adjustments, tier overrides) writes one row here in the same transaction as the change,
-- naming the credential's subject and the request id (auditlog/store.py). Rows are only
-- ever inserted: auditlog/sql/audit_events.sql adds the trigger that refuses UPDATE and
-- DELETE (a function, so it lives in a repeatable file, applied after this one).

CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    -- PostgreSQL's clock at the start of the change's transaction (now()).
    occurred_at timestamptz NOT NULL DEFAULT now(),
    -- The credential's subject (`sub`): who made the change.
    subject     text NOT NULL CHECK (subject <> ''),
    -- The gateway's x-request-id (cleaned), or the one the edge made up.
    request_id  text NOT NULL,
    -- <service>.<rpc>, e.g. 'catalog.adjust_stock' (auditlog.model.ACTIONS).
    action      text NOT NULL CHECK (action <> ''),
    -- What changed: 'item', 'campaign' or 'member', and its id.
    target_kind text NOT NULL,
    target_id   text NOT NULL,
    -- The request as the use case accepted it, secrets masked (auditlog/redaction.py).
    content     jsonb NOT NULL
);
-- ListAuditEvents and `surge audit-log`: newest first, all of them or by subject or target.
CREATE INDEX audit_events_newest ON audit_events (occurred_at DESC, id DESC);
CREATE INDEX audit_events_subject ON audit_events (subject, occurred_at DESC, id DESC);
CREATE INDEX audit_events_target ON audit_events (target_id, occurred_at DESC, id DESC);

-- The credential's subject when an operator made the entry by hand (AdjustPoints, and the
-- debt repayment its credit triggered); NULL for the service's own entries (redemptions,
-- earning, expiry, ...) and for every entry written before this migration.
ALTER TABLE ledger_entries ADD COLUMN actor text;
