-- repay_debt: after a credit, what the member can spend repays debt first (expired points
-- never do: due lots expire first). Returns the points repaid.
--
-- Expects the caller to hold the member's row lock (members by id, after campaigns: the
-- one lock order of every writer). Debt is what a reversal could not take back (already
-- spent); the member's debt = sum(ledger_entries.debt_change).
-- p_actor: the operator whose credit triggered the repayment (AdjustPoints), recorded on its
-- entry; NULL when the service's own credit did.
-- `surge migrate` applies this file again whenever its content changes (server/migrate.py).

-- p_actor was added (0006): the old signature goes, or the two would be ambiguous.
DROP FUNCTION IF EXISTS repay_debt(uuid, text);
CREATE OR REPLACE FUNCTION repay_debt(p_member uuid, p_reference text, p_actor text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_pay bigint;
BEGIN
    IF (SELECT points_debt FROM members WHERE id = p_member) = 0 THEN
        RETURN 0;
    END IF;
    PERFORM expire_due_lots(p_member, clock_timestamp());
    SELECT least(points_debt, points_balance - points_held) INTO v_pay
      FROM members WHERE id = p_member;
    IF v_pay <= 0 THEN
        RETURN 0;
    END IF;
    PERFORM spend_lots(p_member, v_pay, 'debt:' || p_reference);
    PERFORM post_entry(p_member, 'reversal', -v_pay, -v_pay, p_reference, 'debt repayment',
                       p_actor => p_actor);
    RETURN v_pay;
END
$$;
