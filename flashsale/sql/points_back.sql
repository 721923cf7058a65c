-- Points back (issue 16 item 4; flashsale/points_back.py, docs/design.md "Points back"):
-- a campaign's points_back_percent of the points a redemption paid comes back as an
-- earned lot. commit_redemptions posts them set-based for the entries it commits; the two
-- functions here are the one-redemption steps: the post when a points + cash payment is
-- confirmed, and the reversal when a sold redemption is cancelled or returned.
--
-- Every entry is under the reference 'points_back:<redemption id>': the earn (+points) and,
-- if the redemption comes back, one reversal (-taken, debt +the rest). So for each
-- redemption sum(amount - debt_change) over its points-back entries is its points_back
-- while it is sold and 0 once reversed (`surge audit` checks it).
--
-- Points back are a rebate on a spend, not an earning: the lot's source is 'earn' (it is
-- spent and expires like any earned lot) but it does not qualify toward tiers and does not
-- count in lifetime_earned (a member cannot climb tiers by redeeming).
--
-- Both expect the caller to hold the member's row lock (after the campaign's: the one lock
-- order of every writer).
-- `surge migrate` applies this file again whenever its content changes (server/migrate.py).

-- post_points_back: p_points (> 0) as a lot expiring at p_expires_at (NULL: never), its
-- 'earn' entry (and points.earned event, by post_entry), then debt repayment as after any
-- credit (under the redemption's reference, as a cancel's repayment is).
CREATE OR REPLACE FUNCTION post_points_back(
    p_member uuid, p_redemption uuid, p_points bigint, p_expires_at timestamptz
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_points <= 0 THEN
        RETURN;
    END IF;
    INSERT INTO point_lots (member_id, source, amount, remaining, earned_at, expires_at,
                            reference)
    VALUES (p_member, 'earn', p_points, p_points, clock_timestamp(), p_expires_at,
            'points_back:' || p_redemption);
    PERFORM post_entry(p_member, 'earn', p_points, 0, 'points_back:' || p_redemption,
                       'points back on a flash-sale redemption');
    PERFORM repay_debt(p_member, 'redemption:' || p_redemption);
END
$$;

-- reverse_points_back: takes back p_points posted for the redemption, as a refunded
-- purchase's earn is taken back (points/corrections.py): due lots expire first; then what
-- the member can spend (held points stay), from what is left of the points-back lot first,
-- then soonest expiry first; what the balance cannot cover becomes debt, repaid by the
-- member's next credit. One 'reversal' entry (points.reversed) names the redemption.
-- Returns the debt recorded.
CREATE OR REPLACE FUNCTION reverse_points_back(
    p_member uuid, p_redemption uuid, p_points bigint, p_reason text
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_reference text := 'points_back:' || p_redemption;
    -- The takes are recorded apart from the redemption's own spends ('redemption:<id>'),
    -- which a refund restores by reference.
    v_takes text := 'points_back_reversal:' || p_redemption;
    v_taken bigint;
    v_lot uuid;
    v_own bigint := 0;
BEGIN
    IF p_points <= 0 THEN
        RETURN 0;
    END IF;
    PERFORM expire_due_lots(p_member, clock_timestamp());
    SELECT greatest(0, least(p_points, points_balance - points_held)) INTO v_taken
      FROM members WHERE id = p_member;
    IF v_taken > 0 THEN
        SELECT l.id, least(l.remaining, v_taken) INTO v_lot, v_own
          FROM point_lots l
         WHERE l.member_id = p_member AND l.reference = v_reference AND l.remaining > 0;
        IF v_own > 0 THEN
            UPDATE point_lots SET remaining = remaining - v_own WHERE id = v_lot;
            INSERT INTO lot_spends (lot_id, member_id, reference, points)
            VALUES (v_lot, p_member, v_takes, v_own);
        ELSE
            v_own := 0;
        END IF;
        PERFORM spend_lots(p_member, v_taken - v_own, v_takes);
    END IF;
    PERFORM post_entry(p_member, 'reversal', -v_taken, p_points - v_taken, v_reference,
                       p_reason);
    RETURN p_points - v_taken;
END
$$;
