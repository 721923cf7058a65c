-- Lots: every credit is a lot with an expiry; debits take from lots soonest expiry first
-- (never-expiring last), a refund gives back to the lots a spend took from, due lots
-- expire. So a member's balance = sum(point_lots.remaining).
--
-- Every function here expects the caller to hold the member's row lock (members by id,
-- after campaigns: the one lock order of every writer), so lots need no locks of their own.
-- `surge migrate` applies this file again whenever its content changes (server/migrate.py).

-- spend_lots: takes p_points from the member's lots, soonest expiry first, recording each
-- take under p_reference. The lots hold exactly the balance and the caller has checked
-- it, so a shortfall is a bug and aborts the transaction.
CREATE OR REPLACE FUNCTION spend_lots(p_member uuid, p_points bigint, p_reference text)
RETURNS TABLE (spent_lot uuid, spent_points bigint, spent_expires_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    l record;
    v_left bigint := p_points;
BEGIN
    IF p_points <= 0 THEN
        RETURN;
    END IF;
    FOR l IN SELECT x.id, x.remaining, x.expires_at FROM point_lots x
              WHERE x.member_id = p_member AND x.remaining > 0
              ORDER BY x.expires_at NULLS LAST, x.id LOOP
        spent_lot := l.id;
        spent_points := least(l.remaining, v_left);
        spent_expires_at := l.expires_at;
        UPDATE point_lots SET remaining = remaining - spent_points WHERE id = l.id;
        INSERT INTO lot_spends (lot_id, member_id, reference, points)
        VALUES (l.id, p_member, p_reference, spent_points);
        RETURN NEXT;
        v_left := v_left - spent_points;
        EXIT WHEN v_left = 0;
    END LOOP;
    IF v_left > 0 THEN
        RAISE EXCEPTION 'member % has % points fewer in lots than spent (%)',
            p_member, v_left, p_reference;
    END IF;
END
$$;

-- restore_lots: gives back up to p_points that spends under p_reference took, to the lots
-- they came from (with their original expiry). Points spent before lots existed come back
-- as a never-expiring lot, like the opening balance they were part of.
CREATE OR REPLACE FUNCTION restore_lots(p_member uuid, p_reference text, p_points bigint)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    v_left bigint := p_points;
    v_give bigint;
BEGIN
    FOR s IN SELECT x.lot_id, sum(x.points) AS net FROM lot_spends x
              WHERE x.member_id = p_member AND x.reference = p_reference
              GROUP BY x.lot_id HAVING sum(x.points) > 0 ORDER BY x.lot_id LOOP
        EXIT WHEN v_left <= 0;
        v_give := least(s.net, v_left);
        UPDATE point_lots SET remaining = remaining + v_give WHERE id = s.lot_id;
        INSERT INTO lot_spends (lot_id, member_id, reference, points)
        VALUES (s.lot_id, p_member, p_reference, -v_give);
        v_left := v_left - v_give;
    END LOOP;
    IF v_left > 0 THEN
        INSERT INTO point_lots (member_id, source, amount, remaining, reference)
        VALUES (p_member, 'opening', v_left, v_left, p_reference);
    END IF;
END
$$;

-- expire_due_lots: writes an expire entry for what remains of each lot whose expiry is at
-- or before p_now. Points waiting for payment (points_held) are spared until the payment
-- resolves: a confirmation spends them (soonest expiry first), a release lets the next run
-- expire them. Idempotent: an expired lot has nothing left. Returns the points expired.
CREATE OR REPLACE FUNCTION expire_due_lots(p_member uuid, p_now timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    l record;
    v_budget bigint;
    v_take bigint;
    v_total bigint := 0;
BEGIN
    SELECT points_balance - points_held INTO v_budget FROM members WHERE id = p_member;
    FOR l IN SELECT x.id, x.remaining, x.expires_at FROM point_lots x
              WHERE x.member_id = p_member AND x.remaining > 0 AND x.expires_at <= p_now
              ORDER BY x.expires_at, x.id LOOP
        EXIT WHEN v_budget <= 0;
        v_take := least(l.remaining, v_budget);
        UPDATE point_lots SET remaining = remaining - v_take WHERE id = l.id;
        PERFORM post_entry(p_member, 'expire', -v_take, 0, 'lot:' || l.id,
                           'points expired at ' || to_char(l.expires_at AT TIME ZONE 'UTC',
                                                           'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
        v_budget := v_budget - v_take;
        v_total := v_total + v_take;
    END LOOP;
    RETURN v_total;
END
$$;
