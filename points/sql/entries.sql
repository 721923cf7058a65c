-- post_entry: one ledger entry and the balance / debt change it explains, in one step.
--
-- Expects the caller to hold the member's row lock (members by id, after campaigns: the
-- one lock order of every writer). The entry records the balance and debt right after it,
-- so balance = sum(ledger_entries.amount) and debt = sum(ledger_entries.debt_change).
-- p_actor: the credential's subject when an operator makes the entry by hand (AdjustPoints);
-- NULL for the service's own entries.
-- `surge migrate` applies this file again whenever its content changes (server/migrate.py).

-- p_actor was added (0006): the old signature goes, or the two would be ambiguous.
DROP FUNCTION IF EXISTS post_entry(uuid, text, bigint, bigint, text, text, text, text, text, uuid);
CREATE OR REPLACE FUNCTION post_entry(
    p_member uuid, p_kind text, p_amount bigint, p_debt_change bigint,
    p_reference text, p_reason text, p_key_scope text DEFAULT '', p_key text DEFAULT NULL,
    p_operator text DEFAULT NULL, p_counterparty uuid DEFAULT NULL, p_actor text DEFAULT NULL
) RETURNS TABLE (out_entry uuid, out_balance bigint, out_debt bigint)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE members
       SET points_balance = points_balance + p_amount,
           points_debt = points_debt + p_debt_change,
           version = version + 1
     WHERE id = p_member
    RETURNING points_balance, points_debt INTO out_balance, out_debt;
    INSERT INTO ledger_entries (member_id, kind, amount, balance_after, debt_change, debt_after,
                                reference, reason, key_scope, idempotency_key, operator_id,
                                counterparty_id, actor)
    VALUES (p_member, p_kind, p_amount, out_balance, p_debt_change, out_debt, p_reference,
            p_reason, p_key_scope, p_key, p_operator, p_counterparty, p_actor)
    RETURNING id INTO out_entry;
    -- The outbox (events/, docs/events.md): every entry is a points event, in this same
    -- transaction. commit_redemptions writes its 'redeem' entries (and their events) itself.
    PERFORM append_event(
        CASE p_kind WHEN 'earn' THEN 'points.earned' WHEN 'redeem' THEN 'points.spent'
                    WHEN 'refund' THEN 'points.refunded' WHEN 'expire' THEN 'points.expired'
                    WHEN 'transfer' THEN 'points.transferred' WHEN 'adjust' THEN 'points.adjusted'
                    ELSE 'points.reversed' END,
        'member', p_member::text,
        jsonb_build_object('member_id', p_member, 'entry_id', out_entry, 'kind', p_kind,
                           'amount', p_amount, 'balance_after', out_balance,
                           'debt_after', out_debt, 'reference', p_reference, 'reason', p_reason,
                           'counterparty_id', p_counterparty),
        p_actor);
    RETURN NEXT;
END
$$;
