-- commit_draws: group commit of lottery draws (lottery/committer.py), one statement per
-- batch on an autocommit connection, like commit_redemptions.
--
-- p_batch is a JSON array of objects with: ord, id, lottery_id, member_id, idempotency_key,
-- request_hash, prize_id, cost_points, requested_at, fence, and for a GOOD prize the
-- redemption to make: redemption_id, shipping_address, redemption_code (null for a pool
-- item: commit_redemptions takes its code from the pool).
--
-- Lock order (docs/inventory.md): lotteries, then the prize campaigns of the batch's prizes,
-- then members, each by id (commit_redemptions, called below, locks the same rows again). Prize rows and
-- lottery_members rows are written only under their lottery's lock, so they need none of
-- their own. Each entry's guards are checked on the locked rows, in batch order, before it
-- writes anything, so a refused entry writes nothing and never aborts the batch:
--   the key (EXISTING: see request_hash and prize_id), NOT_FOUND, HOLD_EXPIRED (past the
--   fence: the sweeper may release the hold), LOTTERY_NOT_ACTIVE, MEMBER_FROZEN,
--   BELOW_REDEMPTION_THRESHOLD, LIMIT_TOTAL, LIMIT_DAILY (the UTC day's), PRIZE_GONE
--   (the drawn prize has no stock left here: Redis was behind; the caller draws again),
--   INSUFFICIENT_POINTS. Accepted: COMMITTED.
-- An accepted draw spends its cost like a redemption: a 'redeem' ledger entry with
-- reference 'lottery_draw:<id>' (post_entry, which also writes points.spent), lots soonest
-- expiry first (spend_lots), the prize's awarded count, the member's counters, and its
-- lottery.drawn event, all in this transaction. A GOOD prize with a prize campaign
-- (lottery/prizes.py) becomes a redemption of that campaign by commit_redemptions() in the
-- same transaction (key 'lottery:<draw id>', points 0): stock ledger, code, events and
-- fulfilment as for any redemption. Should it refuse (the campaign's units or a pool's
-- codes gone: an operator cut them), the draw's writes are undone (a savepoint) and the
-- draw answers PRIZE_GONE, so no prize is awarded that cannot be delivered. The CHECKs on lottery_prizes (awarded <=
-- stock), lottery_members (limits) and members (no overdraft) stay the last word.
-- Every row returns the member's mirror for Redis (spendable, version, frozen).
-- `surge migrate` applies this file again whenever its content changes (server/migrate.py).

DROP FUNCTION IF EXISTS commit_draws(jsonb);
CREATE OR REPLACE FUNCTION commit_draws(p_batch jsonb)
RETURNS TABLE (
    ord integer, outcome text, draw_id uuid, request_hash text, prize_id uuid,
    member_spendable bigint, member_version bigint, member_frozen boolean,
    redemption_id uuid
)
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    e record;
    l lotteries;
    m members;
    p lottery_prizes;
    lm lottery_members;
    d lottery_draws;
    v_day date;
    v_outcome text;
    v_redemption record;
    v_refused text;
BEGIN
    PERFORM 1 FROM lotteries
     WHERE id IN (SELECT (x ->> 'lottery_id')::uuid FROM jsonb_array_elements(p_batch) x)
     ORDER BY id FOR UPDATE;
    PERFORM 1 FROM campaigns
     WHERE id IN (SELECT lp.campaign_id FROM lottery_prizes lp
                   WHERE lp.id IN (SELECT (x ->> 'prize_id')::uuid
                                     FROM jsonb_array_elements(p_batch) x))
     ORDER BY id FOR UPDATE;
    PERFORM 1 FROM members
     WHERE id IN (SELECT (x ->> 'member_id')::uuid FROM jsonb_array_elements(p_batch) x)
     ORDER BY id FOR UPDATE;
    -- The stock levels the batch's prizes may take, all now and in (item, location) order,
    -- as stock_redeem locks them for a batch of redemptions: the per-draw
    -- commit_redemptions calls below then find them locked, in whatever order the draws
    -- come, and cannot deadlock with a redemption batch or a cancel taking the same items.
    PERFORM 1 FROM campaign_stock cs
      JOIN stock_levels s ON s.item_id = cs.item_id AND s.location_id = cs.location_id
     WHERE cs.campaign_id IN (SELECT lp.campaign_id FROM lottery_prizes lp
                               WHERE lp.id IN (SELECT (x ->> 'prize_id')::uuid
                                                 FROM jsonb_array_elements(p_batch) x))
     ORDER BY s.item_id, s.location_id FOR UPDATE OF s;
    -- A point is never spent past its expiry (as commit_redemptions).
    PERFORM expire_due_lots(s.member_id, v_now)
       FROM (SELECT DISTINCT pl.member_id FROM point_lots pl
              WHERE pl.member_id IN (SELECT (x ->> 'member_id')::uuid
                                       FROM jsonb_array_elements(p_batch) x)
                AND pl.remaining > 0 AND pl.expires_at <= v_now
              ORDER BY pl.member_id) s;

    FOR e IN
        SELECT j.pos, x.*
          FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS j(value, pos),
               jsonb_to_record(j.value) AS x(
                   ord integer, id uuid, lottery_id uuid, member_id uuid,
                   idempotency_key text, request_hash text, prize_id uuid,
                   cost_points bigint, requested_at timestamptz, fence timestamptz,
                   redemption_id uuid, shipping_address jsonb, redemption_code text)
         ORDER BY j.pos
    LOOP
        v_outcome := NULL;
        redemption_id := NULL;
        draw_id := NULL;
        request_hash := NULL;
        prize_id := NULL;
        SELECT * INTO l FROM lotteries WHERE id = e.lottery_id;
        SELECT * INTO m FROM members WHERE id = e.member_id;
        SELECT * INTO d FROM lottery_draws ld
         WHERE ld.member_id = e.member_id AND ld.idempotency_key = e.idempotency_key;
        SELECT * INTO p FROM lottery_prizes lp
         WHERE lp.id = e.prize_id AND lp.lottery_id = e.lottery_id;
        SELECT * INTO lm FROM lottery_members x
         WHERE x.lottery_id = e.lottery_id AND x.member_id = e.member_id;
        v_day := (e.requested_at AT TIME ZONE 'UTC')::date;
        IF d.id IS NOT NULL THEN
            v_outcome := 'EXISTING';
            draw_id := d.id;
            request_hash := d.request_hash;
            prize_id := d.prize_id;
            redemption_id := d.redemption_id;
        ELSIF l.id IS NULL OR m.id IS NULL OR p.id IS NULL THEN
            v_outcome := 'NOT_FOUND';
        ELSIF clock_timestamp() > e.fence THEN
            v_outcome := 'HOLD_EXPIRED';
        ELSIF e.requested_at < l.starts_at OR e.requested_at >= l.ends_at THEN
            v_outcome := 'LOTTERY_NOT_ACTIVE';
        ELSIF m.frozen THEN
            v_outcome := 'MEMBER_FROZEN';
        ELSIF NOT m.redemption_eligible THEN
            v_outcome := 'BELOW_REDEMPTION_THRESHOLD';
        ELSIF coalesce(lm.draws_total, 0) >= l.per_member_total THEN
            v_outcome := 'LIMIT_TOTAL';
        ELSIF lm.day = v_day AND lm.draws_day >= l.per_member_daily THEN
            v_outcome := 'LIMIT_DAILY';
        ELSIF p.stock IS NOT NULL AND p.awarded >= p.stock THEN
            v_outcome := 'PRIZE_GONE';
        ELSIF m.points_balance - m.points_held < e.cost_points THEN
            v_outcome := 'INSUFFICIENT_POINTS';
        ELSE
          BEGIN  -- a savepoint: a prize that cannot be delivered undoes the draw's writes
            v_outcome := 'COMMITTED';
            INSERT INTO lottery_draws (id, lottery_id, member_id, idempotency_key, request_hash,
                                       prize_id, cost_points, day, created_at)
            VALUES (e.id, e.lottery_id, e.member_id, e.idempotency_key, e.request_hash,
                    e.prize_id, e.cost_points, v_day, e.requested_at);
            UPDATE lottery_prizes SET awarded = awarded + 1 WHERE id = e.prize_id;
            INSERT INTO lottery_members AS x (lottery_id, member_id, draws_total, total_limit,
                                              day, draws_day, day_limit)
            VALUES (e.lottery_id, e.member_id, 1, l.per_member_total, v_day, 1,
                    l.per_member_daily)
            ON CONFLICT (lottery_id, member_id) DO UPDATE
               SET draws_total = x.draws_total + 1,
                   -- A draw of yesterday committed after one of today (admitted just
                   -- before midnight, committed just after) leaves today's count alone:
                   -- Redis counted it against yesterday's.
                   draws_day = CASE WHEN x.day = excluded.day THEN x.draws_day + 1
                                    WHEN x.day > excluded.day THEN x.draws_day
                                    ELSE 1 END,
                   day = greatest(x.day, excluded.day),
                   total_limit = excluded.total_limit,
                   day_limit = excluded.day_limit;
            PERFORM post_entry(e.member_id, 'redeem', -e.cost_points, 0,
                               'lottery_draw:' || e.id, 'lottery draw');
            PERFORM spend_lots(e.member_id, e.cost_points, 'lottery_draw:' || e.id);
            PERFORM append_event(
                'lottery.drawn', 'lottery_draw', e.id::text,
                jsonb_build_object('draw_id', e.id, 'lottery_id', e.lottery_id,
                                   'member_id', e.member_id, 'prize_id', e.prize_id,
                                   'prize_kind', p.kind, 'item_id', p.item_id,
                                   'cost_points', e.cost_points));
            IF p.campaign_id IS NOT NULL THEN
                SELECT r.outcome, r.redemption_id INTO v_redemption
                  FROM commit_redemptions(jsonb_build_array(jsonb_build_object(
                      'ord', 0, 'id', e.redemption_id, 'member_id', e.member_id,
                      'campaign_id', p.campaign_id, 'quantity', 1, 'points_total', 0,
                      'cash_total_cents', 0, 'idempotency_key', 'lottery:' || e.id,
                      'request_hash', e.request_hash, 'shipping_address', e.shipping_address,
                      'redemption_code', e.redemption_code, 'requested_at', e.requested_at,
                      'fence', e.fence, 'payment_due_at', NULL))) r;
                IF v_redemption.outcome <> 'COMMITTED' THEN
                    v_refused := v_redemption.outcome;  -- variables outlive the rollback
                    RAISE EXCEPTION 'prize campaign refused: %', v_redemption.outcome
                          USING ERRCODE = 'LT001';
                END IF;
                UPDATE lottery_draws SET redemption_id = v_redemption.redemption_id
                 WHERE id = e.id;
                redemption_id := v_redemption.redemption_id;
            END IF;
            draw_id := e.id;
            request_hash := e.request_hash;
            prize_id := e.prize_id;
          EXCEPTION WHEN SQLSTATE 'LT001' THEN
            -- Only a prize campaign out of units means the prize is gone (Redis then takes
            -- it out of the draw); its fence passing is the draw's own HOLD_EXPIRED (the
            -- prize is given back, the caller retries).
            v_outcome := CASE WHEN v_refused = 'HOLD_EXPIRED' THEN 'HOLD_EXPIRED'
                              ELSE 'PRIZE_GONE' END;
          END;
        END IF;
        ord := e.ord;
        outcome := v_outcome;
        SELECT mr.points_balance - mr.points_held, mr.version, mr.frozen
          INTO member_spendable, member_version, member_frozen
          FROM members mr WHERE mr.id = e.member_id;
        RETURN NEXT;
    END LOOP;
END
$$;
