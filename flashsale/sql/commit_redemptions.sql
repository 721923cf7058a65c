-- commit_redemptions: group commit. One statement commits a whole batch of redemptions (one
-- fsync for all); flashsale/committer.py calls it on an autocommit connection.
--
-- p_batch is a JSON array of objects with: ord, id, member_id, campaign_id, quantity,
-- points_total, cash_total_cents, idempotency_key, request_hash, shipping_address,
-- redemption_code, requested_at, fence, payment_due_at (null for points-only),
-- list_points_total and price_rule_id (the price's origin, flashsale/pricing.py; null: the
-- list price was paid), and points_back_expires_at (when a points-back lot posted now expires; null: never).
--
-- Each entry's guards are checked on rows this transaction has locked, before anything is
-- written, so a refused entry writes nothing and never aborts the batch. The CHECK
-- constraints stay as the last word: if one ever fired, the whole batch would roll back.
-- Due lots of the batch's members expire first (a point is never spent past its expiry),
-- a member below the redemption threshold is refused, and a points-only commit spends lots
-- soonest expiry first (as points/sql/lots.sql spend_lots does).
--
-- Outcomes: COMMITTED, PENDING_PAYMENT, EXISTING (the key is taken: see request_hash),
-- NOT_FOUND, HOLD_EXPIRED (past the fence: the sweeper may release the hold),
-- CAMPAIGN_NOT_ACTIVE, MEMBER_FROZEN, BELOW_REDEMPTION_THRESHOLD, SOLD_OUT, LIMIT_EXCEEDED,
-- INSUFFICIENT_POINTS. Every row also returns the versioned counters Redis mirrors, and
-- an accepted entry the code it was given (see "Code pools" below) and its points back.
--
-- Points back (issue 16 item 4, migration 0018, flashsale/sql/points_back.sql): an
-- accepted entry is given back floor(points_total x its campaign's points_back_percent /
-- 100), read from the locked campaign row and stored on the redemption. A COMMITTED
-- entry's are posted here (4e): an earned lot, an 'earn' entry after the batch's 'redeem'
-- entries, a points.earned event; the member's balance (and so the spendable points
-- Redis mirrors) includes them. A PENDING_PAYMENT entry's are posted at confirmation.
--
-- Code pools (issue 15 item 2, migration 0011): an entry whose item takes its codes from a
-- pool (items.code_source = 'POOL') is given one code of the pool (item_codes) in this
-- transaction: 2b locks up to one free code per such entry of the batch (FOR UPDATE SKIP
-- LOCKED, oldest loaded first: another batch's locked codes are its own, so two batches
-- never share one), 3 refuses SOLD_OUT an entry the locked codes cannot cover, 4b gives
-- the k-th accepted entry of an item its k-th locked code. Codes locked and not given
-- stay AVAILABLE (their locks end with the transaction). The entry's redemption_code is
-- NULL for a pool item (the code lives in item_codes.redemption_id: codes are unique per
-- item, redemptions.redemption_code across the table). One code per redemption: the
-- redeem path refuses quantity > 1 for a pool item (flashsale/admission.py).
--
-- Set-based: same signature, output columns and per-entry decisions as the per-entry
-- definition it replaced, for a fraction of the CPU per entry. "0003" below names that
-- definition (migration 0003_ledger, before functions moved out of the migrations; kept
-- verbatim in tests/server/fixtures/migrations_0001_0004/, and
-- tests/flashsale/test_commit_sql.py checks this one against it on random batches).
--
-- 0003 ran ~8 statements per entry (re-reading the campaign, the member, their
-- campaign_members row and the idempotency key, writing each row once per entry, then
-- re-reading all three for the mirrors). A hot item paid that on one row 10-50 times per
-- batch. Here a batch costs a fixed dozen statements whatever its size, and per entry
-- little more than its own rows' writes (and their index and foreign-key upkeep):
--
--   1. parse the JSON once into an array of typed entries, each with dense indexes of its
--      campaign, member, (campaign, member) pair and (member, key);
--   2. lock campaigns, then members, by id (the one lock order of every writer), expire
--      the members' due lots (as 0003), and read each locked row once into arrays;
--   3. decide every entry in batch order in a plain loop over those arrays, keeping
--      running totals (units used, units taken by the member, spendable points, keys
--      accepted) so each entry sees the ones accepted before it, exactly as in 0003;
--   4. write the accepted entries set-based, one statement per table: each changed
--      campaign, member and campaign_members row is written once with the batch's summed
--      deltas (its version bumped once per batch, not once per entry), and lots are taken
--      in the order spend_lots takes them;
--   5. answer every entry with the batch-final state of its rows (read once per row).
--
-- Refused entries write nothing; the CHECK and UNIQUE constraints stay the last word (one
-- firing rolls the whole batch back, as before).
--
-- `surge migrate` applies this file again whenever its content changes (server/migrate.py),
-- in one transaction. CREATE OR REPLACE cannot change a function's arguments or output
-- columns: such a change needs a DROP FUNCTION first. The batch entry type below has no
-- OR REPLACE, so it is dropped and created again each time (nothing depends on it in the
-- catalog: only this function's body uses it). The function itself is dropped first too,
-- since its output columns changed (redemption_code, for code pools); the DROP is a no-op
-- once it is gone, and the whole file runs in one transaction, so no caller sees it missing.

DROP FUNCTION IF EXISTS commit_redemptions(jsonb);

-- One parsed batch entry. pos is the entry's place in the batch (the decision order);
-- ci, mi, pi and ki index the batch's distinct campaigns, members, (campaign, member)
-- pairs and (member, idempotency key) pairs, so the loop keeps its running totals in
-- plain arrays instead of looking rows up.
DROP TYPE IF EXISTS commit_batch_entry;
CREATE TYPE commit_batch_entry AS (
    pos              integer,
    ord              integer,
    id               uuid,
    member_id        uuid,
    campaign_id      uuid,
    quantity         integer,
    points_total     bigint,
    cash_total_cents bigint,
    idempotency_key  text,
    request_hash     text,
    shipping_address jsonb,
    redemption_code  text,
    requested_at     timestamptz,
    fence            timestamptz,
    payment_due_at   timestamptz,
    list_points_total bigint,
    price_rule_id    uuid,
    points_back_expires_at timestamptz,
    ci               integer,
    mi               integer,
    pi               integer,
    ki               integer
);

CREATE OR REPLACE FUNCTION commit_redemptions(p_batch jsonb)
RETURNS TABLE (
    ord integer, outcome text, redemption_id uuid, request_hash text,
    campaign_taken integer, campaign_version bigint,
    member_units integer, member_units_version bigint,
    member_spendable bigint, member_version bigint, member_frozen boolean,
    redemption_code text, points_back bigint
)
LANGUAGE plpgsql
-- The statements below take the batch as array parameters. With custom plans (the default
-- while they look cheaper) PostgreSQL re-plans several of them on every call, which cost
-- more than running them (measured: ~0.6 ms a batch). Generic plans are made once per
-- connection and kept; every lookup here is by key for a batch's worth of rows, so an
-- index path is right whatever the table's size, but a plan made while a table was small
-- (a fresh database, a new campaign) would scan it whole and keep doing so as it grows:
-- hence no sequential scans (they stay possible where no index applies).
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_entries commit_batch_entry[];
    e commit_batch_entry;
    v_n integer;
    -- How many distinct campaigns, members and (member, key) pairs.
    v_nc integer;
    v_nm integer;
    v_nk integer;
    -- The locked rows by index (NULL: no such row), and the redemption that held each
    -- entry's key before the batch (by pos).
    v_c campaigns[];
    v_m members[];
    v_r redemptions[];
    c campaigns;
    m members;
    -- Running totals of the entries accepted so far: units per campaign, points per
    -- member, units taken per (campaign, member) (starting from campaign_members), and
    -- the redemption created per (member, key).
    v_c_units integer[];
    v_m_points bigint[];
    v_p_taken integer[];
    v_k_id uuid[];
    v_k_hash text[];
    -- The answer per entry (by pos).
    v_outcome text[];
    v_rid uuid[];
    v_rhash text[];
    v_accepted integer := 0;
    v_spends boolean := false;
    -- The batch-final rows by index, for the mirrors.
    v_cf campaigns[];
    v_mf members[];
    v_pf campaign_members[];
    v_missing bigint;
    -- Code pools: by campaign index, its item's index among the batch's pool items (0: the
    -- item's codes are generated); by pool index, the item, the codes locked for it and
    -- how many accepted entries use them; the locked codes' ids; by pos, the code given.
    v_c_pool integer[];
    v_pool_item uuid[];
    v_pool_codes integer[];
    v_pool_used integer[];
    v_code_ids bigint[];
    v_code text[];
    v_uncoded bigint;
    -- Points back by pos (0 unless accepted), and whether a COMMITTED entry posts any.
    v_back bigint[];
    v_gives_back boolean := false;
BEGIN
    -- 1. Parse once. shipping_address is taken with -> as 0003 did, so a JSON null stays
    -- a jsonb null (jsonb_to_record would make it SQL NULL).
    SELECT array_agg(ROW(s.pos, s.ord, s.id, s.member_id, s.campaign_id, s.quantity,
                         s.points_total, s.cash_total_cents, s.idempotency_key,
                         s.request_hash, s.shipping_address, s.redemption_code,
                         s.requested_at, s.fence, s.payment_due_at,
                         s.list_points_total, s.price_rule_id, s.points_back_expires_at,
                         s.ci, s.mi, s.pi, s.ki)::commit_batch_entry ORDER BY s.pos),
           count(*), max(s.ci), max(s.mi), max(s.ki)
      INTO v_entries, v_n, v_nc, v_nm, v_nk
      FROM (SELECT j.pos::integer AS pos, x.*, j.value -> 'shipping_address' AS shipping_address,
                   dense_rank() OVER (ORDER BY x.campaign_id)::integer AS ci,
                   dense_rank() OVER (ORDER BY x.member_id)::integer AS mi,
                   dense_rank() OVER (ORDER BY x.campaign_id, x.member_id)::integer AS pi,
                   dense_rank() OVER (ORDER BY x.member_id, x.idempotency_key)::integer AS ki
              FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS j(value, pos),
                   jsonb_to_record(j.value) AS x(
                       ord integer, id uuid, member_id uuid, campaign_id uuid,
                       quantity integer, points_total bigint, cash_total_cents bigint,
                       idempotency_key text, request_hash text, redemption_code text,
                       requested_at timestamptz, fence timestamptz,
                       payment_due_at timestamptz, list_points_total bigint,
                       price_rule_id uuid, points_back_expires_at timestamptz)) s;
    IF v_n = 0 THEN
        RETURN;
    END IF;

    -- 2. One fixed lock order (campaigns, then members, each by id) for every writer:
    -- batches, cancels, confirmations, expiries and ledger operations cannot deadlock.
    PERFORM 1 FROM campaigns
     WHERE id IN (SELECT x.campaign_id FROM unnest(v_entries) x)
     ORDER BY id FOR UPDATE;
    PERFORM 1 FROM members
     WHERE id IN (SELECT x.member_id FROM unnest(v_entries) x)
     ORDER BY id FOR UPDATE;
    -- One index probe per member; writes only when a lot is due (members by id).
    PERFORM expire_due_lots(d.member_id, v_now)
       FROM (SELECT DISTINCT l.member_id FROM point_lots l
              WHERE l.member_id IN (SELECT x.member_id FROM unnest(v_entries) x)
                AND l.remaining > 0 AND l.expires_at <= v_now
              ORDER BY l.member_id) d;

    -- Each locked row once, in one statement (they cannot change under our locks;
    -- campaign_members is written only under its campaign's lock).
    SELECT cs.r, ms.r, ps.r, rs.r
      INTO v_c, v_m, v_p_taken, v_r
      FROM (SELECT array_agg(cr ORDER BY u.ci) AS r
              FROM (SELECT DISTINCT x.ci, x.campaign_id FROM unnest(v_entries) x) u
              LEFT JOIN campaigns cr ON cr.id = u.campaign_id) cs,
           (SELECT array_agg(mr ORDER BY u.mi) AS r
              FROM (SELECT DISTINCT x.mi, x.member_id FROM unnest(v_entries) x) u
              LEFT JOIN members mr ON mr.id = u.member_id) ms,
           (SELECT array_agg(coalesce(cm.units_taken, 0) ORDER BY u.pi) AS r
              FROM (SELECT DISTINCT x.pi, x.campaign_id, x.member_id FROM unnest(v_entries) x) u
              LEFT JOIN campaign_members cm
                ON cm.campaign_id = u.campaign_id AND cm.member_id = u.member_id) ps,
           (SELECT array_agg(rr ORDER BY x.pos) AS r
              FROM unnest(v_entries) x
              LEFT JOIN redemptions rr
                ON rr.member_id = x.member_id AND rr.idempotency_key = x.idempotency_key) rs;
    v_c_units := array_fill(0, ARRAY[v_nc]);
    v_m_points := array_fill(0::bigint, ARRAY[v_nm]);
    v_k_id := array_fill(NULL::uuid, ARRAY[v_nk]);
    v_k_hash := array_fill(NULL::text, ARRAY[v_nk]);
    v_outcome := array_fill(NULL::text, ARRAY[v_n]);
    v_rid := array_fill(NULL::uuid, ARRAY[v_n]);
    v_rhash := array_fill(NULL::text, ARRAY[v_n]);
    v_code := array_fill(NULL::text, ARRAY[v_n]);
    v_back := array_fill(0::bigint, ARRAY[v_n]);

    -- 2b. Code pools: which campaigns sell a pool item, and up to one free code per entry
    -- of each such item, locked now (under the campaign locks, before any decision). SKIP
    -- LOCKED: codes another batch locked (a batch of another campaign of the same item)
    -- are not waited for; if too few are left, this batch's extra entries are SOLD_OUT.
    WITH pool AS (
        SELECT i.id, row_number() OVER (ORDER BY i.id)::integer AS pi
          FROM items i
         WHERE i.id IN (SELECT cc.item_id FROM unnest(v_c) cc) AND i.code_source = 'POOL')
    SELECT array_agg(coalesce(p.pi, 0) ORDER BY u.ci),
           (SELECT array_agg(p2.id ORDER BY p2.pi) FROM pool p2)
      INTO v_c_pool, v_pool_item
      FROM generate_subscripts(v_c, 1) AS u(ci)
      LEFT JOIN pool p ON p.id = (v_c[u.ci]).item_id;
    IF v_pool_item IS NOT NULL THEN
        WITH need AS (
            SELECT p.pi::integer AS pi, p.item_id, count(*) AS n
              FROM unnest(v_entries) x
              JOIN unnest(v_pool_item) WITH ORDINALITY AS p(item_id, pi)
                ON p.pi = v_c_pool[x.ci]
             GROUP BY p.pi, p.item_id
        ), locked AS MATERIALIZED (
            SELECT n.pi, l.id
              FROM need n
             CROSS JOIN LATERAL (
                   SELECT ic.id FROM item_codes ic
                    WHERE ic.item_id = n.item_id AND ic.status = 'AVAILABLE'
                    ORDER BY ic.id LIMIT n.n
                      FOR UPDATE SKIP LOCKED) l
        )
        SELECT (SELECT array_agg(l.id ORDER BY l.pi, l.id) FROM locked l),
               array_agg(coalesce(k.n, 0) ORDER BY g.pi)
          INTO v_code_ids, v_pool_codes
          FROM generate_subscripts(v_pool_item, 1) AS g(pi)
          LEFT JOIN (SELECT l.pi, count(*)::integer AS n FROM locked l GROUP BY l.pi) k
            ON k.pi = g.pi;
        v_pool_used := array_fill(0, ARRAY[array_length(v_pool_item, 1)]);
    END IF;

    -- 3. Decide, in batch order, with the checks of 0003 in the same order. The running
    -- totals make each entry see the entries accepted before it, as 0003's re-reads did;
    -- a refused entry changes nothing.
    FOR i IN 1 .. v_n LOOP
        e := v_entries[i];
        c := v_c[e.ci];
        m := v_m[e.mi];
        IF c.id IS NULL OR m.id IS NULL THEN
            v_outcome[i] := 'NOT_FOUND';
        ELSIF (v_r[i]).id IS NOT NULL THEN
            v_outcome[i] := 'EXISTING';
            v_rid[i] := (v_r[i]).id;
            v_rhash[i] := (v_r[i]).request_hash;
        ELSIF v_k_id[e.ki] IS NOT NULL THEN
            -- An earlier entry of this batch took the key (0003 found its fresh row).
            v_outcome[i] := 'EXISTING';
            v_rid[i] := v_k_id[e.ki];
            v_rhash[i] := v_k_hash[e.ki];
        ELSIF clock_timestamp() > e.fence THEN
            v_outcome[i] := 'HOLD_EXPIRED';
        ELSIF e.requested_at < c.starts_at OR e.requested_at >= c.ends_at THEN
            v_outcome[i] := 'CAMPAIGN_NOT_ACTIVE';
        ELSIF m.frozen THEN
            v_outcome[i] := 'MEMBER_FROZEN';
        ELSIF NOT m.redemption_eligible THEN
            v_outcome[i] := 'BELOW_REDEMPTION_THRESHOLD';
        ELSIF c.units_committed + c.units_held + v_c_units[e.ci] + e.quantity
              > c.units_allotted THEN
            v_outcome[i] := 'SOLD_OUT';
        ELSIF v_c_pool[e.ci] > 0
              AND v_pool_used[v_c_pool[e.ci]] >= v_pool_codes[v_c_pool[e.ci]] THEN
            -- Code pools: no locked code left for this entry (the pool ran dry).
            v_outcome[i] := 'SOLD_OUT';
        ELSIF v_p_taken[e.pi] + e.quantity > c.per_member_limit THEN
            v_outcome[i] := 'LIMIT_EXCEEDED';
        ELSIF m.points_balance - m.points_held - v_m_points[e.mi] < e.points_total THEN
            v_outcome[i] := 'INSUFFICIENT_POINTS';
        ELSE
            IF e.payment_due_at IS NOT NULL THEN
                v_outcome[i] := 'PENDING_PAYMENT';
            ELSE
                v_outcome[i] := 'COMMITTED';
                v_spends := v_spends OR e.points_total > 0;
            END IF;
            -- Points back: decided now from the locked row (floor: integer division).
            v_back[i] := e.points_total * c.points_back_percent / 100;
            v_gives_back := v_gives_back OR (v_back[i] > 0 AND e.payment_due_at IS NULL);
            v_c_units[e.ci] := v_c_units[e.ci] + e.quantity;
            v_p_taken[e.pi] := v_p_taken[e.pi] + e.quantity;
            v_m_points[e.mi] := v_m_points[e.mi] + e.points_total;
            v_k_id[e.ki] := e.id;
            v_k_hash[e.ki] := e.request_hash;
            IF v_c_pool[e.ci] > 0 THEN  -- code pools: one of the item's locked codes
                v_pool_used[v_c_pool[e.ci]] := v_pool_used[v_c_pool[e.ci]] + 1;
            END IF;
            v_rid[i] := e.id;
            v_rhash[i] := e.request_hash;
            v_accepted := v_accepted + 1;
        END IF;
    END LOOP;

    -- 4. Write what was accepted, each table once.
    IF v_accepted > 0 THEN
        INSERT INTO redemptions (id, member_id, campaign_id, quantity, points_total,
                                 cash_total_cents, status, idempotency_key, request_hash,
                                 shipping_address, redemption_code, payment_due_at,
                                 created_at, updated_at, list_points_total, price_rule_id,
                                 points_back)
        SELECT x.id, x.member_id, x.campaign_id, x.quantity, x.points_total,
               x.cash_total_cents, v_outcome[x.pos], x.idempotency_key, x.request_hash,
               x.shipping_address, x.redemption_code, x.payment_due_at,
               x.requested_at, x.requested_at, x.list_points_total, x.price_rule_id,
               v_back[x.pos]
          FROM unnest(v_entries) x
         WHERE v_outcome[x.pos] IN ('COMMITTED', 'PENDING_PAYMENT')
         ORDER BY x.pos;

        -- 4b. Code pools: the k-th accepted entry of a pool item (batch order) takes the
        -- k-th code locked for that item in 2b; the UNIQUE (redemption_id) and the status
        -- CHECK stay the last word. Every such entry must get one: the loop counted them.
        IF v_code_ids IS NOT NULL THEN
            WITH want AS (
                SELECT x.pos, x.id, v_c_pool[x.ci] AS pi,
                       row_number() OVER (PARTITION BY v_c_pool[x.ci] ORDER BY x.pos) AS k
                  FROM unnest(v_entries) x
                 WHERE v_c_pool[x.ci] > 0
                   AND v_outcome[x.pos] IN ('COMMITTED', 'PENDING_PAYMENT')
            ), have AS (
                SELECT ic.id, p.pi::integer AS pi,
                       row_number() OVER (PARTITION BY p.pi ORDER BY ic.id) AS k
                  FROM item_codes ic
                  JOIN unnest(v_pool_item) WITH ORDINALITY AS p(item_id, pi)
                    ON p.item_id = ic.item_id
                 WHERE ic.id = ANY (v_code_ids)
            ), taken AS (
                UPDATE item_codes ic
                   SET status = 'ISSUED', redemption_id = w.id, issued_at = v_now
                  FROM want w JOIN have h ON h.pi = w.pi AND h.k = w.k
                 WHERE ic.id = h.id
                RETURNING w.pos, ic.code
            )
            SELECT array_agg(t.code ORDER BY g.pos)
              INTO v_code
              FROM generate_series(1, v_n) AS g(pos)
              LEFT JOIN taken t ON t.pos = g.pos;
            SELECT count(*) INTO v_uncoded
              FROM unnest(v_entries) x
             WHERE v_c_pool[x.ci] > 0
               AND v_outcome[x.pos] IN ('COMMITTED', 'PENDING_PAYMENT')
               AND v_code[x.pos] IS NULL;
            IF v_uncoded <> 0 THEN
                RAISE EXCEPTION '% accepted entries of a code pool got no code', v_uncoded;
            END IF;
        END IF;

        -- Pending entries hold units (and points) until the payment resolves; the others
        -- commit them. One update per row, its version bumped once per batch.
        UPDATE campaigns cr
           SET units_committed = cr.units_committed + d.committed,
               units_held = cr.units_held + d.held,
               version = cr.version + 1
          FROM (SELECT x.campaign_id,
                       coalesce(sum(x.quantity) FILTER (WHERE x.payment_due_at IS NULL), 0)
                           AS committed,
                       coalesce(sum(x.quantity) FILTER (WHERE x.payment_due_at IS NOT NULL), 0)
                           AS held
                  FROM unnest(v_entries) x
                 WHERE v_outcome[x.pos] IN ('COMMITTED', 'PENDING_PAYMENT')
                 GROUP BY x.campaign_id) d
         WHERE cr.id = d.campaign_id;

        INSERT INTO campaign_members AS cm (campaign_id, member_id, units_taken, unit_limit)
        SELECT x.campaign_id, x.member_id, sum(x.quantity), (v_c[x.ci]).per_member_limit
          FROM unnest(v_entries) x
         WHERE v_outcome[x.pos] IN ('COMMITTED', 'PENDING_PAYMENT')
         GROUP BY x.campaign_id, x.member_id, x.ci
        ON CONFLICT (campaign_id, member_id)
        DO UPDATE SET units_taken = cm.units_taken + excluded.units_taken,
                      version = cm.version + 1;

        -- 0003 touched the member for a pending entry (points held, even 0) and for a
        -- committed one with points (balance); a committed cash-only entry left it alone.
        -- A committed entry's points back (4e) are in the balance from here on.
        UPDATE members mr
           SET points_balance = mr.points_balance - d.spent + d.back,
               points_held = mr.points_held + d.held,
               version = mr.version + 1
          FROM (SELECT x.member_id,
                       coalesce(sum(x.points_total) FILTER (WHERE x.payment_due_at IS NULL), 0)
                           AS spent,
                       coalesce(sum(v_back[x.pos]) FILTER (WHERE x.payment_due_at IS NULL), 0)
                           AS back,
                       coalesce(sum(x.points_total)
                                    FILTER (WHERE x.payment_due_at IS NOT NULL), 0) AS held
                  FROM unnest(v_entries) x
                 WHERE v_outcome[x.pos] = 'PENDING_PAYMENT'
                    OR (v_outcome[x.pos] = 'COMMITTED' AND x.points_total > 0)
                 GROUP BY x.member_id) d
         WHERE mr.id = d.member_id;
    END IF;

    IF v_spends THEN
        -- Lots, as spend_lots called once per committed entry in batch order takes them:
        -- a member's spendable lots in spend order (soonest expiry first, never-expiring
        -- last, then id) laid end to end cover [0, their total); the member's k-th entry
        -- takes [points of the entries before it, + its points). Each (entry, lot) overlap
        -- is one take, recorded under the entry's own reference (a refund restores by it);
        -- each lot is updated once, by the sum of its takes.
        WITH need AS MATERIALIZED (
            SELECT x.pos, x.member_id, 'redemption:' || x.id AS reference,
                   sum(x.points_total) OVER w - x.points_total AS lo,
                   sum(x.points_total) OVER w AS hi
              FROM unnest(v_entries) x
             WHERE v_outcome[x.pos] = 'COMMITTED' AND x.points_total > 0
            WINDOW w AS (PARTITION BY x.member_id ORDER BY x.pos)
        ), lots AS MATERIALIZED (
            SELECT l.id, l.member_id,
                   sum(l.remaining) OVER w - l.remaining AS lo,
                   sum(l.remaining) OVER w AS hi
              FROM (SELECT DISTINCT n.member_id FROM need n) s
             CROSS JOIN LATERAL (
                   SELECT pl.id, pl.member_id, pl.remaining, pl.expires_at FROM point_lots pl
                    WHERE pl.member_id = s.member_id AND pl.remaining > 0
                    ORDER BY pl.expires_at NULLS LAST, pl.id) l
            WINDOW w AS (PARTITION BY l.member_id ORDER BY l.expires_at NULLS LAST, l.id)
        ), take AS MATERIALIZED (
            SELECT n.pos, n.member_id, n.reference, l.id AS lot_id, l.lo AS lot_lo,
                   least(n.hi, l.hi) - greatest(n.lo, l.lo) AS points
              FROM need n JOIN lots l ON l.member_id = n.member_id
             WHERE l.hi > n.lo AND l.lo < n.hi
        ), spent AS (
            UPDATE point_lots pl SET remaining = pl.remaining - t.points
              FROM (SELECT t.lot_id, sum(t.points) AS points FROM take t GROUP BY t.lot_id) t
             WHERE pl.id = t.lot_id
        ), recorded AS (
            INSERT INTO lot_spends (lot_id, member_id, reference, points)
            SELECT t.lot_id, t.member_id, t.reference, t.points
              FROM take t ORDER BY t.pos, t.lot_lo
        )
        -- The lots hold exactly the balance, which was checked: a shortfall is a bug (each
        -- entry takes at most its points, so equal sums mean every entry was covered).
        SELECT coalesce((SELECT sum(n.hi - n.lo) FROM need n), 0)
               - coalesce((SELECT sum(t.points) FROM take t), 0)
          INTO v_missing;
        IF v_missing <> 0 THEN
            RAISE EXCEPTION 'lots hold % points fewer than the batch spends', v_missing;
        END IF;

        -- One 'redeem' entry per committed redemption with points, in batch order (seq),
        -- each with the member's balance right after it: the balance as locked, less this
        -- and the member's earlier entries of the batch. Redemptions leave debt alone.
        INSERT INTO ledger_entries (member_id, kind, amount, balance_after, debt_after,
                                    reference, reason)
        SELECT x.member_id, 'redeem', -x.points_total,
               (v_m[x.mi]).points_balance
                   - sum(x.points_total) OVER (PARTITION BY x.mi ORDER BY x.pos),
               (v_m[x.mi]).points_debt, 'redemption:' || x.id, 'flash-sale redemption'
          FROM unnest(v_entries) x
         WHERE v_outcome[x.pos] = 'COMMITTED' AND x.points_total > 0
         ORDER BY x.pos;
    END IF;

    -- 4d. The stock ledger (inventory/sql/stock.sql): each COMMITTED entry's units leave
    -- its campaign's allotment, one 'redeemed' movement per (entry, location), in one call
    -- for the batch. A PENDING_PAYMENT entry's leave when its payment is confirmed.
    IF v_accepted > 0 THEN
        PERFORM stock_redeem(array_agg(x.id ORDER BY x.pos),
                             array_agg(x.campaign_id ORDER BY x.pos),
                             array_agg(x.quantity ORDER BY x.pos), NULL)
           FROM unnest(v_entries) x
          WHERE v_outcome[x.pos] = 'COMMITTED'
         HAVING count(*) > 0;
    END IF;

    -- 4c. The outbox (events/, docs/events.md), in this same call: no extra round trip on
    -- the hot path. One set-based INSERT over the accepted entries, in batch order: per
    -- COMMITTED entry its redemption.committed, then its points.spent when it spent points
    -- (the 'redeem' ledger entry above); per campaign this batch left with no unit to sell,
    -- one campaign.sold_out after its last accepted entry (it had units before the batch,
    -- or nothing would have been accepted). A PENDING_PAYMENT entry's redemption.committed
    -- and points.spent come when its payment is confirmed (flashsale/lifecycle.py); refused
    -- entries write none.
    IF v_accepted > 0 THEN
        INSERT INTO events (type, subject_kind, subject_id, payload)
        SELECT ev.type, ev.subject_kind, ev.subject_id, ev.payload
          FROM (SELECT x.pos, 0 AS k, 'redemption.committed' AS type,
                       'redemption' AS subject_kind, x.id::text AS subject_id,
                       jsonb_build_object(
                           'redemption_id', x.id, 'member_id', x.member_id,
                           'campaign_id', x.campaign_id, 'item_id', (v_c[x.ci]).item_id,
                           'quantity', x.quantity, 'points_total', x.points_total,
                           'cash_total_cents', x.cash_total_cents,
                           'status', 'COMMITTED') AS payload
                  FROM unnest(v_entries) x
                 WHERE v_outcome[x.pos] = 'COMMITTED'
                UNION ALL
                SELECT x.pos, 1, 'points.spent', 'member', x.member_id::text,
                       jsonb_build_object(
                           'member_id', x.member_id, 'kind', 'redeem',
                           'amount', -x.points_total,
                           'balance_after', (v_m[x.mi]).points_balance
                               - sum(x.points_total) OVER (PARTITION BY x.mi ORDER BY x.pos),
                           'debt_after', (v_m[x.mi]).points_debt,
                           'reference', 'redemption:' || x.id,
                           'reason', 'flash-sale redemption')
                  FROM unnest(v_entries) x
                 WHERE v_outcome[x.pos] = 'COMMITTED' AND x.points_total > 0
                UNION ALL
                SELECT max(x.pos), 2, 'campaign.sold_out', 'campaign', x.campaign_id::text,
                       jsonb_build_object(
                           'campaign_id', x.campaign_id, 'item_id', (v_c[x.ci]).item_id,
                           'units_allotted', (v_c[x.ci]).units_allotted,
                           'units_available', 0)
                  FROM unnest(v_entries) x
                 WHERE v_outcome[x.pos] IN ('COMMITTED', 'PENDING_PAYMENT')
                 GROUP BY x.ci, x.campaign_id
                HAVING (v_c[x.ci]).units_committed + (v_c[x.ci]).units_held + v_c_units[x.ci]
                       >= (v_c[x.ci]).units_allotted) ev
         ORDER BY ev.pos, ev.k;
    END IF;

    -- 4e. Points back of the COMMITTED entries, set-based: one lot each (the program's
    -- expiry, as the committer computed it), one 'earn' entry each after all of the
    -- batch's 'redeem' entries (its balance_after: the member's balance as locked, less
    -- the batch's committed spends, plus this and the member's earlier points back), and
    -- their points.earned events (as post_entry writes them). A member in debt repays it
    -- from them, as after any credit (rare: a member in debt has nothing left to spend).
    IF v_gives_back THEN
        WITH spent AS (
            SELECT x.pos, x.id, x.member_id, x.mi, x.points_back_expires_at,
                   coalesce(sum(x.points_total) FILTER (WHERE v_outcome[x.pos] = 'COMMITTED')
                                OVER (PARTITION BY x.mi), 0) AS spent
              FROM unnest(v_entries) x
        ), back AS MATERIALIZED (
            SELECT s.pos, s.id, s.member_id, s.points_back_expires_at, v_back[s.pos] AS points,
                   'points_back:' || s.id AS reference,
                   (v_m[s.mi]).points_balance - s.spent
                       + sum(v_back[s.pos]) OVER (PARTITION BY s.mi ORDER BY s.pos)
                       AS balance_after,
                   (v_m[s.mi]).points_debt AS debt_after
              FROM spent s
             WHERE v_outcome[s.pos] = 'COMMITTED' AND v_back[s.pos] > 0
        ), lots AS (
            INSERT INTO point_lots (member_id, source, amount, remaining, earned_at,
                                    expires_at, reference)
            SELECT b.member_id, 'earn', b.points, b.points, v_now, b.points_back_expires_at,
                   b.reference
              FROM back b ORDER BY b.pos
        ), entries AS (
            INSERT INTO ledger_entries (member_id, kind, amount, balance_after, debt_after,
                                        reference, reason)
            SELECT b.member_id, 'earn', b.points, b.balance_after, b.debt_after, b.reference,
                   'points back on a flash-sale redemption'
              FROM back b ORDER BY b.pos
            RETURNING id, member_id, amount, balance_after, debt_after, reference, reason, seq
        )
        INSERT INTO events (type, subject_kind, subject_id, payload)
        SELECT 'points.earned', 'member', en.member_id::text,
               jsonb_build_object(
                   'member_id', en.member_id, 'entry_id', en.id, 'kind', 'earn',
                   'amount', en.amount, 'balance_after', en.balance_after,
                   'debt_after', en.debt_after, 'reference', en.reference,
                   'reason', en.reason, 'counterparty_id', NULL)
          FROM entries en ORDER BY en.seq;
        PERFORM repay_debt(d.member_id, d.reference)
           FROM (SELECT DISTINCT ON (x.mi) x.member_id, 'redemption:' || x.id AS reference
                   FROM unnest(v_entries) x
                  WHERE v_outcome[x.pos] = 'COMMITTED' AND v_back[x.pos] > 0
                    AND (v_m[x.mi]).points_debt > 0
                  ORDER BY x.mi, x.pos DESC) d
          ORDER BY d.member_id;
    END IF;

    -- 5. Answer each entry with the batch-final state of its rows, each row read once.
    -- NOT_FOUND entries carry no mirror, as in 0003, whichever row was missing.
    SELECT cs.r, ms.r, ps.r
      INTO v_cf, v_mf, v_pf
      FROM (SELECT array_agg(cr ORDER BY u.ci) AS r
              FROM (SELECT DISTINCT x.ci, x.campaign_id FROM unnest(v_entries) x) u
              LEFT JOIN campaigns cr ON cr.id = u.campaign_id) cs,
           (SELECT array_agg(mr ORDER BY u.mi) AS r
              FROM (SELECT DISTINCT x.mi, x.member_id FROM unnest(v_entries) x) u
              LEFT JOIN members mr ON mr.id = u.member_id) ms,
           (SELECT array_agg(cm ORDER BY u.pi) AS r
              FROM (SELECT DISTINCT x.pi, x.campaign_id, x.member_id FROM unnest(v_entries) x) u
              LEFT JOIN campaign_members cm
                ON cm.campaign_id = u.campaign_id AND cm.member_id = u.member_id) ps;
    RETURN QUERY
    SELECT x.ord, v_outcome[x.pos], v_rid[x.pos], v_rhash[x.pos],
           CASE WHEN f.known THEN (v_cf[x.ci]).units_committed + (v_cf[x.ci]).units_held END,
           CASE WHEN f.known THEN (v_cf[x.ci]).version END,
           CASE WHEN f.known THEN coalesce((v_pf[x.pi]).units_taken, 0) END,
           CASE WHEN f.known THEN coalesce((v_pf[x.pi]).version, 0) END,
           CASE WHEN f.known THEN (v_mf[x.mi]).points_balance - (v_mf[x.mi]).points_held END,
           CASE WHEN f.known THEN (v_mf[x.mi]).version END,
           CASE WHEN f.known THEN (v_mf[x.mi]).frozen END,
           CASE WHEN v_outcome[x.pos] IN ('COMMITTED', 'PENDING_PAYMENT')
                THEN coalesce(v_code[x.pos], x.redemption_code) END,
           v_back[x.pos]
      FROM unnest(v_entries) x
     CROSS JOIN LATERAL (SELECT v_outcome[x.pos] <> 'NOT_FOUND' AS known) f
     ORDER BY x.pos;
END
$$;
