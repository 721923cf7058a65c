-- Group commit: one statement commits a whole batch of redemptions (one fsync for all).
--
-- p_batch is a JSON array of objects with: ord, id, member_id, campaign_id, quantity,
-- points_total, cash_total_cents, idempotency_key, request_hash, shipping_address,
-- redemption_code, requested_at, fence, payment_due_at (null for points-only).
--
-- Each entry's guards are checked on rows this transaction has locked, before anything is
-- written, so a refused entry writes nothing and never aborts the batch. The CHECK
-- constraints stay as the last word: if one ever fired, the whole batch would roll back.
--
-- Outcomes: COMMITTED, PENDING_PAYMENT, EXISTING (the key is taken: see request_hash),
-- NOT_FOUND, HOLD_EXPIRED (past the fence: the sweeper may release the hold),
-- CAMPAIGN_NOT_ACTIVE, MEMBER_FROZEN, SOLD_OUT, LIMIT_EXCEEDED, INSUFFICIENT_POINTS.
-- Every row also returns the versioned counters Redis mirrors.
CREATE FUNCTION commit_redemptions(p_batch jsonb)
RETURNS TABLE (
    ord integer, outcome text, redemption_id uuid, request_hash text,
    campaign_taken integer, campaign_version bigint,
    member_units integer, member_units_version bigint,
    member_spendable bigint, member_version bigint, member_frozen boolean
)
LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
    c campaigns%ROWTYPE;
    m members%ROWTYPE;
    v_taken integer;
    v_qty integer;
    v_points bigint;
    v_pending boolean;
    v_balance bigint;
    v_existing_id uuid;
    v_existing_hash text;
BEGIN
    -- One fixed lock order (campaigns, then members, each by id) for every writer:
    -- batches, cancels, confirmations and expiries cannot deadlock.
    PERFORM 1 FROM campaigns
     WHERE id IN (SELECT (x ->> 'campaign_id')::uuid FROM jsonb_array_elements(p_batch) x)
     ORDER BY id FOR UPDATE;
    PERFORM 1 FROM members
     WHERE id IN (SELECT (x ->> 'member_id')::uuid FROM jsonb_array_elements(p_batch) x)
     ORDER BY id FOR UPDATE;

    FOR e IN SELECT value FROM jsonb_array_elements(p_batch) LOOP
        ord := (e ->> 'ord')::integer;
        v_qty := (e ->> 'quantity')::integer;
        v_points := (e ->> 'points_total')::bigint;
        v_pending := (e ->> 'payment_due_at') IS NOT NULL;
        redemption_id := NULL;
        request_hash := NULL;
        campaign_taken := NULL; campaign_version := NULL;
        member_units := NULL; member_units_version := NULL;
        member_spendable := NULL; member_version := NULL; member_frozen := NULL;

        SELECT * INTO c FROM campaigns WHERE id = (e ->> 'campaign_id')::uuid;
        IF NOT FOUND THEN
            outcome := 'NOT_FOUND';
            RETURN NEXT;
            CONTINUE;
        END IF;
        SELECT * INTO m FROM members WHERE id = (e ->> 'member_id')::uuid;
        IF NOT FOUND THEN
            outcome := 'NOT_FOUND';
            RETURN NEXT;
            CONTINUE;
        END IF;
        SELECT cm.units_taken INTO v_taken FROM campaign_members cm
         WHERE cm.campaign_id = c.id AND cm.member_id = m.id;
        v_taken := coalesce(v_taken, 0);

        SELECT r.id, r.request_hash INTO v_existing_id, v_existing_hash
          FROM redemptions r
         WHERE r.member_id = m.id AND r.idempotency_key = e ->> 'idempotency_key';
        IF FOUND THEN
            outcome := 'EXISTING';
            redemption_id := v_existing_id;
            request_hash := v_existing_hash;
        ELSIF clock_timestamp() > (e ->> 'fence')::timestamptz THEN
            outcome := 'HOLD_EXPIRED';
        ELSIF (e ->> 'requested_at')::timestamptz < c.starts_at
           OR (e ->> 'requested_at')::timestamptz >= c.ends_at THEN
            outcome := 'CAMPAIGN_NOT_ACTIVE';
        ELSIF m.frozen THEN
            outcome := 'MEMBER_FROZEN';
        ELSIF c.units_committed + c.units_held + v_qty > c.units_allotted THEN
            outcome := 'SOLD_OUT';
        ELSIF v_taken + v_qty > c.per_member_limit THEN
            outcome := 'LIMIT_EXCEEDED';
        ELSIF m.points_balance - m.points_held < v_points THEN
            outcome := 'INSUFFICIENT_POINTS';
        ELSE
            INSERT INTO redemptions (id, member_id, campaign_id, quantity, points_total,
                                     cash_total_cents, status, idempotency_key, request_hash,
                                     shipping_address, redemption_code, payment_due_at,
                                     created_at, updated_at)
            VALUES ((e ->> 'id')::uuid, m.id, c.id, v_qty, v_points,
                    (e ->> 'cash_total_cents')::bigint,
                    CASE WHEN v_pending THEN 'PENDING_PAYMENT' ELSE 'COMMITTED' END,
                    e ->> 'idempotency_key', e ->> 'request_hash',
                    e -> 'shipping_address', e ->> 'redemption_code',
                    (e ->> 'payment_due_at')::timestamptz,
                    (e ->> 'requested_at')::timestamptz, (e ->> 'requested_at')::timestamptz);
            IF v_pending THEN
                UPDATE campaigns SET units_held = units_held + v_qty, version = version + 1
                 WHERE id = c.id;
                UPDATE members SET points_held = points_held + v_points, version = version + 1
                 WHERE id = m.id;
                outcome := 'PENDING_PAYMENT';
            ELSE
                UPDATE campaigns SET units_committed = units_committed + v_qty,
                                     version = version + 1
                 WHERE id = c.id;
                IF v_points > 0 THEN
                    UPDATE members SET points_balance = points_balance - v_points,
                                       version = version + 1
                     WHERE id = m.id
                    RETURNING points_balance INTO v_balance;
                    INSERT INTO ledger_entries (member_id, kind, amount, balance_after,
                                                reference, reason)
                    VALUES (m.id, 'redeem', -v_points, v_balance,
                            'redemption:' || (e ->> 'id'), 'flash-sale redemption');
                END IF;
                outcome := 'COMMITTED';
            END IF;
            INSERT INTO campaign_members AS cm (campaign_id, member_id, units_taken, unit_limit)
            VALUES (c.id, m.id, v_qty, c.per_member_limit)
            ON CONFLICT (campaign_id, member_id)
            DO UPDATE SET units_taken = cm.units_taken + v_qty, version = cm.version + 1;
            redemption_id := (e ->> 'id')::uuid;
            request_hash := e ->> 'request_hash';
        END IF;

        SELECT x.units_committed + x.units_held, x.version
          INTO campaign_taken, campaign_version FROM campaigns x WHERE x.id = c.id;
        SELECT x.units_taken, x.version INTO member_units, member_units_version
          FROM campaign_members x WHERE x.campaign_id = c.id AND x.member_id = m.id;
        member_units := coalesce(member_units, 0);
        member_units_version := coalesce(member_units_version, 0);
        SELECT x.points_balance - x.points_held, x.version, x.frozen
          INTO member_spendable, member_version, member_frozen FROM members x WHERE x.id = m.id;
        RETURN NEXT;
    END LOOP;
END
$$;
