-- The points ledger: lots and their expiry, debt, tiers, freezes, beneficiaries, transfers,
-- purchase earnings and their reversals.
--
-- Invariants (surge audit checks them):
--   members.points_balance = sum(ledger_entries.amount) = sum(point_lots.remaining)
--   members.points_debt    = sum(ledger_entries.debt_change) >= 0
-- Every writer holds the member's row lock (members by id, after campaigns) while it
-- touches that member's lots, so lots need no locks of their own.

-- -- Members ---------------------------------------------------------------------------
ALTER TABLE members
    -- Points a reversal could not take back (already spent); repaid first from credits.
    ADD COLUMN points_debt bigint NOT NULL DEFAULT 0 CHECK (points_debt >= 0),
    -- Points ever earned (earnings less their reversals): the redemption threshold's measure.
    ADD COLUMN lifetime_earned bigint NOT NULL DEFAULT 0 CHECK (lifetime_earned >= 0),
    -- lifetime_earned >= the program's threshold, kept by the server; Redis mirrors it.
    ADD COLUMN redemption_eligible boolean NOT NULL DEFAULT true,
    ADD COLUMN frozen_reason text,
    -- The tier reached (NULL: the ladder's first), until when it is kept, and an
    -- operator's floor.
    ADD COLUMN tier text,
    ADD COLUMN tier_valid_until timestamptz,
    ADD COLUMN manual_tier text,
    ADD COLUMN tier_evaluated_at timestamptz;

UPDATE members m
   SET lifetime_earned = coalesce(
       (SELECT sum(l.amount) FROM ledger_entries l WHERE l.member_id = m.id AND l.kind = 'earn'),
       0);

-- -- Ledger entries ----------------------------------------------------------------------
ALTER TABLE ledger_entries
    -- Statement order: entries of one transaction share created_at.
    ADD COLUMN seq bigserial,
    -- Change to the member's debt (a reversal's shortfall > 0, a repayment < 0).
    ADD COLUMN debt_change bigint NOT NULL DEFAULT 0,
    ADD COLUMN debt_after bigint NOT NULL DEFAULT 0 CHECK (debt_after >= 0),
    -- Idempotency keys are scoped by operation ('' = EarnPoints, 'task', 'adjust').
    ADD COLUMN key_scope text NOT NULL DEFAULT '',
    ADD COLUMN operator_id text,
    -- The other member of a transfer.
    ADD COLUMN counterparty_id uuid;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_amount_check;
ALTER TABLE ledger_entries
    ADD CONSTRAINT ledger_entries_moves CHECK (amount <> 0 OR debt_change <> 0);
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_member_id_idempotency_key_key;
ALTER TABLE ledger_entries
    ADD CONSTRAINT ledger_entries_key UNIQUE (member_id, key_scope, idempotency_key);
CREATE INDEX ledger_entries_statement ON ledger_entries (member_id, seq);
CREATE INDEX ledger_entries_period ON ledger_entries (created_at);

-- -- Lots --------------------------------------------------------------------------------
-- Each credit is a lot with an expiry; spends take from lots soonest expiry first
-- (never-expiring last). A lot is valid while now < expires_at (NULL: never expires).
CREATE TABLE point_lots (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    member_id   uuid NOT NULL REFERENCES members (id),
    source      text NOT NULL CHECK (source IN ('earn', 'adjust', 'transfer', 'opening')),
    amount      bigint NOT NULL CHECK (amount > 0),
    remaining   bigint NOT NULL CHECK (remaining >= 0),
    -- Points of this lot that count toward tiers (earned points less their reversals).
    qualifying  bigint NOT NULL DEFAULT 0 CHECK (qualifying >= 0),
    earned_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    reference   text NOT NULL,
    CONSTRAINT point_lots_remaining CHECK (remaining <= amount)
);
CREATE INDEX point_lots_spend ON point_lots (member_id, expires_at, id) WHERE remaining > 0;
CREATE INDEX point_lots_due ON point_lots (expires_at) WHERE remaining > 0;
CREATE INDEX point_lots_qualifying ON point_lots (member_id, earned_at) WHERE qualifying > 0;

-- What every spend took from which lot (> 0) and what a refund gave back (< 0).
CREATE TABLE lot_spends (
    id         bigserial PRIMARY KEY,
    lot_id     uuid NOT NULL REFERENCES point_lots (id),
    member_id  uuid NOT NULL,
    reference  text NOT NULL,
    points     bigint NOT NULL CHECK (points <> 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lot_spends_reference ON lot_spends (member_id, reference);

-- Balances from before lots existed: one never-expiring opening lot each.
INSERT INTO point_lots (member_id, source, amount, remaining, reference)
SELECT id, 'opening', points_balance, points_balance, 'opening balance'
  FROM members WHERE points_balance > 0;

-- -- Purchases, reversals, beneficiaries, transfers, member actions ---------------------
CREATE TABLE purchases (
    member_id       uuid NOT NULL REFERENCES members (id),
    event_id        text NOT NULL,
    amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
    points          bigint NOT NULL CHECK (points >= 0),
    tier            text NOT NULL,
    multiplier      numeric NOT NULL,
    lot_id          uuid REFERENCES point_lots (id),
    ledger_entry_id uuid,
    reversed_cents  bigint NOT NULL DEFAULT 0,
    reversed_points bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, event_id),
    CONSTRAINT purchases_reversed CHECK (reversed_cents BETWEEN 0 AND amount_cents
                                         AND reversed_points BETWEEN 0 AND points)
);

CREATE TABLE purchase_reversals (
    member_id         uuid NOT NULL,
    event_id          text NOT NULL,
    purchase_event_id text NOT NULL,
    amount_cents      bigint NOT NULL CHECK (amount_cents > 0),
    -- The amount the request named (0 = all that was left), to recognise a replay.
    requested_cents   bigint NOT NULL,
    points            bigint NOT NULL CHECK (points >= 0),
    taken             bigint NOT NULL CHECK (taken >= 0),
    debt              bigint NOT NULL CHECK (debt >= 0),
    ledger_entry_id   uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, event_id),
    FOREIGN KEY (member_id, purchase_event_id) REFERENCES purchases (member_id, event_id),
    CONSTRAINT purchase_reversals_sum CHECK (taken + debt = points)
);

CREATE TABLE beneficiaries (
    member_id      uuid NOT NULL REFERENCES members (id),
    beneficiary_id uuid NOT NULL REFERENCES members (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, beneficiary_id),
    CONSTRAINT beneficiaries_not_self CHECK (member_id <> beneficiary_id)
);

CREATE TABLE transfers (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    from_member_id  uuid NOT NULL REFERENCES members (id),
    to_member_id    uuid NOT NULL REFERENCES members (id),
    points          bigint NOT NULL CHECK (points > 0),
    idempotency_key text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (from_member_id, idempotency_key)
);

-- Freezes, unfreezes and tier changes, with who and why.
CREATE TABLE member_actions (
    id          bigserial PRIMARY KEY,
    member_id   uuid NOT NULL REFERENCES members (id),
    action      text NOT NULL
        CHECK (action IN ('freeze', 'unfreeze', 'manual_tier', 'tier')),
    detail      text NOT NULL DEFAULT '',
    reason      text NOT NULL,
    operator_id text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX member_actions_member ON member_actions (member_id, id);

-- Last run of periodic ledger work shared by every server process (a lease).
CREATE TABLE ledger_jobs (
    name        text PRIMARY KEY,
    last_run_at timestamptz NOT NULL
);

-- -- Functions ---------------------------------------------------------------------------
-- Every function below expects the caller to hold the member's row lock.

-- post_entry: one ledger entry and the balance / debt change it explains, in one step.
CREATE FUNCTION post_entry(
    p_member uuid, p_kind text, p_amount bigint, p_debt_change bigint,
    p_reference text, p_reason text, p_key_scope text DEFAULT '', p_key text DEFAULT NULL,
    p_operator text DEFAULT NULL, p_counterparty uuid DEFAULT NULL
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
                                counterparty_id)
    VALUES (p_member, p_kind, p_amount, out_balance, p_debt_change, out_debt, p_reference,
            p_reason, p_key_scope, p_key, p_operator, p_counterparty)
    RETURNING id INTO out_entry;
    RETURN NEXT;
END
$$;

-- spend_lots: takes p_points from the member's lots, soonest expiry first, recording each
-- take under p_reference. The lots hold exactly the balance and the caller has checked
-- it, so a shortfall is a bug and aborts the transaction.
CREATE FUNCTION spend_lots(p_member uuid, p_points bigint, p_reference text)
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
CREATE FUNCTION restore_lots(p_member uuid, p_reference text, p_points bigint)
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
CREATE FUNCTION expire_due_lots(p_member uuid, p_now timestamptz)
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

-- repay_debt: after a credit, what the member can spend repays debt first (expired points
-- never do: due lots expire first). Returns the points repaid.
CREATE FUNCTION repay_debt(p_member uuid, p_reference text)
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
    PERFORM post_entry(p_member, 'reversal', -v_pay, -v_pay, p_reference, 'debt repayment');
    RETURN v_pay;
END
$$;

-- Group commit (as in 0002), now also: due lots of the batch's members expire first (a point
-- is never spent past its expiry), a member below the redemption threshold is refused
-- (BELOW_REDEMPTION_THRESHOLD), and a points-only commit spends lots soonest expiry first.
-- Same signature and output columns as 0002.
CREATE OR REPLACE FUNCTION commit_redemptions(p_batch jsonb)
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
    v_debt bigint;
    v_existing_id uuid;
    v_existing_hash text;
    v_now timestamptz := clock_timestamp();
BEGIN
    -- One fixed lock order (campaigns, then members, each by id) for every writer:
    -- batches, cancels, confirmations, expiries and ledger operations cannot deadlock.
    PERFORM 1 FROM campaigns
     WHERE id IN (SELECT (x ->> 'campaign_id')::uuid FROM jsonb_array_elements(p_batch) x)
     ORDER BY id FOR UPDATE;
    PERFORM 1 FROM members
     WHERE id IN (SELECT (x ->> 'member_id')::uuid FROM jsonb_array_elements(p_batch) x)
     ORDER BY id FOR UPDATE;
    -- One index probe per member; writes only when a lot is due.
    PERFORM expire_due_lots(d.member_id, v_now)
       FROM (SELECT DISTINCT l.member_id FROM point_lots l
              WHERE l.member_id IN (SELECT (x ->> 'member_id')::uuid
                                      FROM jsonb_array_elements(p_batch) x)
                AND l.remaining > 0 AND l.expires_at <= v_now) d;

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
        ELSIF NOT m.redemption_eligible THEN
            outcome := 'BELOW_REDEMPTION_THRESHOLD';
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
                    PERFORM spend_lots(m.id, v_points, 'redemption:' || (e ->> 'id'));
                    UPDATE members SET points_balance = points_balance - v_points,
                                       version = version + 1
                     WHERE id = m.id
                    RETURNING points_balance, points_debt INTO v_balance, v_debt;
                    INSERT INTO ledger_entries (member_id, kind, amount, balance_after,
                                                debt_after, reference, reason)
                    VALUES (m.id, 'redeem', -v_points, v_balance, v_debt,
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
