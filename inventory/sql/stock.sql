-- The stock ledger's writers (migration 0013, docs/inventory.md). Every change of an
-- item's stock goes through stock_move, which writes the movement and the balances it
-- changes in the caller's transaction, so the balances are the movements' sums by
-- construction; `surge audit` checks it all the same (inventory/audit.py).
--
-- Lock order, shared with every writer: campaign, member, redemption (callers), then the
-- item row (stock_move takes it when available stock changes), then the item's
-- stock_levels rows by location id. The group commit takes no item lock: it redeems from
-- campaign allotments, which leaves available stock as it was.

-- The location stock goes to when none is named.
CREATE OR REPLACE FUNCTION stock_default_location() RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT id FROM locations WHERE code = 'default'
$$;

-- The item row, then all its levels by location id: the lock order every writer that
-- touches more than one level takes first (a subset in another order could deadlock with
-- the group commit's stock_redeem).
CREATE OR REPLACE FUNCTION stock_lock(p_item uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM items WHERE id = p_item FOR UPDATE;
    PERFORM 1 FROM stock_levels s WHERE s.item_id = p_item ORDER BY s.location_id FOR UPDATE;
END
$$;

-- Several items (a bundle's parts): every item row by id, then all their levels by (item,
-- location). The same order as stock_lock's for one item, so a bundle's writer and a
-- single item's cannot wait on each other in a circle.
CREATE OR REPLACE FUNCTION stock_lock_items(p_items uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM items WHERE id = ANY (p_items) ORDER BY id FOR UPDATE;
    PERFORM 1 FROM stock_levels s WHERE s.item_id = ANY (p_items)
     ORDER BY s.item_id, s.location_id FOR UPDATE;
END
$$;

-- One movement and the balances it changes. When available stock changes, an item with a
-- low-stock threshold that crosses it writes stock.low / stock.replenished (migration 0016).
-- The CHECKs of stock_levels, items and
-- stock_movements are the last word (callers check first, to answer with a clear error).
CREATE OR REPLACE FUNCTION stock_move(
    p_item uuid, p_location uuid, p_kind text, p_on_hand bigint, p_allotted bigint,
    p_campaign uuid, p_redemption uuid, p_reference text, p_actor text, p_reason text
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_watched boolean;
BEGIN
    IF p_on_hand <> p_allotted THEN  -- available changes: the item row first (lock order)
        UPDATE items SET stock_on_hand = stock_on_hand + (p_on_hand - p_allotted)
         WHERE id = p_item
        RETURNING low_stock_threshold IS NOT NULL OR stock_low INTO v_watched;
        -- The low-stock signal (inventory/sql/low_stock.sql), under the row lock just
        -- taken; one more statement only for items with a threshold (or still flagged).
        -- A change made of several movements (a transfer, a return written off) defers it
        -- to its end (stock_low_settle), so a net-zero change signals nothing.
        IF v_watched AND current_setting('surge.low_stock_deferred', true)
                         IS DISTINCT FROM 'on' THEN
            PERFORM stock_low_check(p_item, p_actor);
        END IF;
    END IF;
    UPDATE stock_levels
       SET on_hand = on_hand + p_on_hand, allotted = allotted + p_allotted
     WHERE item_id = p_item AND location_id = p_location;
    IF NOT FOUND THEN
        -- A first movement here; the item row is locked (above, or by the caller), so no
        -- other transaction inserts the same level meanwhile.
        INSERT INTO stock_levels (item_id, location_id, on_hand, allotted)
        VALUES (p_item, p_location, p_on_hand, p_allotted);
    END IF;
    INSERT INTO stock_movements (item_id, location_id, kind, on_hand_delta, allotted_delta,
                                 campaign_id, redemption_id, reference, actor, reason)
    VALUES (p_item, p_location, p_kind, p_on_hand, p_allotted, p_campaign, p_redemption,
            p_reference, p_actor, p_reason)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

-- Takes p_units of available stock (on_hand - allotted) for a movement of p_kind: from
-- p_location, or when it is NULL from the item's locations in order (the default one
-- first, then by code). 'allotted' reserves them (allotted + u); any other kind removes
-- them (on_hand - u). Returns where they came from. Raises check_violation if there is
-- not enough (callers check items.stock_on_hand, the sum of available, first).
CREATE OR REPLACE FUNCTION stock_take_available(
    p_item uuid, p_units bigint, p_location uuid, p_kind text, p_campaign uuid,
    p_redemption uuid, p_reference text, p_actor text, p_reason text
) RETURNS TABLE (location_id uuid, units bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_left bigint := p_units;
    v_take bigint;
    r record;
BEGIN
    PERFORM stock_lock(p_item);
    FOR r IN
        SELECT s.location_id, s.on_hand - s.allotted AS free
          FROM stock_levels s JOIN locations l ON l.id = s.location_id
         WHERE s.item_id = p_item AND s.on_hand > s.allotted
           AND (p_location IS NULL OR s.location_id = p_location)
         ORDER BY l.code <> 'default', l.code
    LOOP
        EXIT WHEN v_left = 0;
        v_take := least(v_left, r.free);
        PERFORM stock_move(p_item, r.location_id, p_kind,
                           CASE WHEN p_kind = 'allotted' THEN 0 ELSE -v_take END,
                           CASE WHEN p_kind = 'allotted' THEN v_take ELSE 0 END,
                           p_campaign, p_redemption, p_reference, p_actor, p_reason);
        location_id := r.location_id;
        units := v_take;
        RETURN NEXT;
        v_left := v_left - v_take;
    END LOOP;
    IF v_left > 0 THEN
        RAISE EXCEPTION 'item % has % units fewer available than the % asked', p_item, v_left,
            p_units USING ERRCODE = 'check_violation';
    END IF;
END
$$;

-- A campaign's allotment grows by p_units, drawn from p_location, or (NULL) first from the
-- locations the campaign already draws from, in its order (an UpdateCampaign raising the
-- allotment), then as stock_take_available draws; each location drawn from joins the
-- campaign's list of that item (a bundle calls it once per part, migration 0019).
CREATE OR REPLACE FUNCTION stock_allot(
    p_campaign uuid, p_item uuid, p_units bigint, p_location uuid, p_actor text, p_reason text
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_left bigint := p_units;
    v_take bigint;
    r record;
BEGIN
    IF p_location IS NULL THEN
        PERFORM stock_lock(p_item);
        FOR r IN SELECT cs.location_id, s.on_hand - s.allotted AS free
                   FROM campaign_stock cs
                   JOIN stock_levels s ON s.item_id = p_item AND s.location_id = cs.location_id
                  WHERE cs.campaign_id = p_campaign AND cs.item_id = p_item
                    AND s.on_hand > s.allotted
                  ORDER BY cs.position
        LOOP
            EXIT WHEN v_left = 0;
            v_take := least(v_left, r.free);
            PERFORM stock_allot(p_campaign, p_item, v_take, r.location_id, p_actor, p_reason);
            v_left := v_left - v_take;
        END LOOP;
        IF v_left = 0 THEN
            RETURN;
        END IF;
    END IF;
    FOR r IN SELECT * FROM stock_take_available(p_item, v_left, p_location, 'allotted',
                                                p_campaign, NULL, NULL, p_actor, p_reason)
    LOOP
        INSERT INTO campaign_stock AS cs (campaign_id, item_id, location_id, position, remaining)
        VALUES (p_campaign, p_item, r.location_id,
                (SELECT coalesce(max(position), 0) + 1 FROM campaign_stock
                  WHERE campaign_id = p_campaign AND item_id = p_item),
                r.units)
        ON CONFLICT (campaign_id, item_id, location_id)
        DO UPDATE SET remaining = cs.remaining + excluded.remaining;
    END LOOP;
END
$$;

-- A campaign gives p_units of its allotment back (an update lowering it, EndCampaign),
-- from its last location first. Callers release only units neither sold nor held. For a
-- bundle p_units are bundles: each part gives back p_units * its quantity, the parts' item
-- rows and levels locked first (stock_lock_items).
CREATE OR REPLACE FUNCTION stock_release(
    p_campaign uuid, p_units bigint, p_actor text, p_reason text
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_left bigint;
    v_take bigint;
    p record;
    r record;
BEGIN
    PERFORM stock_lock_items(ARRAY(SELECT item_id FROM campaign_parts
                                    WHERE campaign_id = p_campaign));
    FOR p IN SELECT cp.item_id, cp.quantity FROM campaign_parts cp
              WHERE cp.campaign_id = p_campaign ORDER BY cp.item_id
    LOOP
        v_left := p_units * p.quantity;
        FOR r IN SELECT cs.location_id, cs.remaining FROM campaign_stock cs
                  WHERE cs.campaign_id = p_campaign AND cs.item_id = p.item_id
                    AND cs.remaining > 0
                  ORDER BY cs.position DESC
        LOOP
            EXIT WHEN v_left = 0;
            v_take := least(v_left, r.remaining);
            PERFORM stock_move(p.item_id, r.location_id, 'released', 0, -v_take, p_campaign,
                               NULL, NULL, p_actor, p_reason);
            UPDATE campaign_stock SET remaining = remaining - v_take
             WHERE campaign_id = p_campaign AND item_id = p.item_id
               AND location_id = r.location_id;
            v_left := v_left - v_take;
        END LOOP;
        IF v_left > 0 THEN
            RAISE EXCEPTION 'campaign % holds % units of item % fewer than the % to release',
                p_campaign, v_left, p.item_id, p_units * p.quantity
                USING ERRCODE = 'check_violation';
        END IF;
    END LOOP;
END
$$;

-- Redemptions commit: each takes its units out of its campaign's allotment, from the
-- campaign's locations in position order. Set-based for the group commit (one call per
-- batch): the batch's redemptions of a campaign laid end to end cover [0, their units),
-- the campaign's locations' remainders laid end to end cover [0, its remaining); each
-- overlap is one 'redeemed' movement (as commit_redemptions takes point lots). A bundle
-- (migration 0019) does this per part: a redemption of k bundles needs k * quantity of
-- each part's item, matched against that item's remainders. The campaigns are locked by
-- the caller.
CREATE OR REPLACE FUNCTION stock_redeem(
    p_ids uuid[], p_campaigns uuid[], p_quantities integer[], p_actor text
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_missing bigint;
BEGIN
    -- The levels this can touch, locked in the one order (two batches of different
    -- campaigns of one item would otherwise lock its locations in either order).
    PERFORM 1 FROM stock_levels s
      JOIN campaign_stock cs ON cs.location_id = s.location_id AND cs.item_id = s.item_id
     WHERE cs.campaign_id = ANY (p_campaigns) AND cs.remaining > 0
     ORDER BY s.item_id, s.location_id FOR UPDATE OF s;
    WITH need AS MATERIALIZED (
        SELECT n.id, n.campaign_id, p.item_id, n.quantity::bigint * p.quantity AS units,
               sum(n.quantity::bigint * p.quantity) OVER w - n.quantity::bigint * p.quantity
                   AS lo,
               sum(n.quantity::bigint * p.quantity) OVER w AS hi
          FROM unnest(p_ids, p_campaigns, p_quantities) WITH ORDINALITY
               AS n(id, campaign_id, quantity, k)
          JOIN campaign_parts p ON p.campaign_id = n.campaign_id
        WINDOW w AS (PARTITION BY n.campaign_id, p.item_id ORDER BY n.k)
    ), have AS MATERIALIZED (
        SELECT cs.campaign_id, cs.location_id, cs.item_id, cs.position,
               sum(cs.remaining) OVER w - cs.remaining AS lo, sum(cs.remaining) OVER w AS hi
          FROM campaign_stock cs
         WHERE cs.campaign_id = ANY (p_campaigns) AND cs.remaining > 0
        WINDOW w AS (PARTITION BY cs.campaign_id, cs.item_id ORDER BY cs.position)
    ), piece AS MATERIALIZED (
        SELECT n.id, n.campaign_id, h.item_id, h.location_id, h.position,
               least(n.hi, h.hi) - greatest(n.lo, h.lo) AS units
          FROM need n JOIN have h ON h.campaign_id = n.campaign_id AND h.item_id = n.item_id
         WHERE h.hi > n.lo AND h.lo < n.hi
    ), levels AS (
        UPDATE stock_levels s
           SET on_hand = s.on_hand - p.units, allotted = s.allotted - p.units
          FROM (SELECT item_id, location_id, sum(units) AS units FROM piece
                 GROUP BY item_id, location_id) p
         WHERE s.item_id = p.item_id AND s.location_id = p.location_id
    ), allotments AS (
        UPDATE campaign_stock cs SET remaining = cs.remaining - p.units
          FROM (SELECT campaign_id, item_id, location_id, sum(units) AS units FROM piece
                 GROUP BY campaign_id, item_id, location_id) p
         WHERE cs.campaign_id = p.campaign_id AND cs.item_id = p.item_id
           AND cs.location_id = p.location_id
    ), recorded AS (
        INSERT INTO stock_movements (item_id, location_id, kind, on_hand_delta,
                                     allotted_delta, campaign_id, redemption_id, actor)
        SELECT item_id, location_id, 'redeemed', -units, -units, campaign_id, id, p_actor
          FROM piece ORDER BY campaign_id, id, item_id, position
    )
    SELECT coalesce((SELECT sum(units) FROM need), 0)
           - coalesce((SELECT sum(units) FROM piece), 0)
      INTO v_missing;
    IF v_missing <> 0 THEN  -- allotments hold units_allotted - units_committed: a bug
        RAISE EXCEPTION 'campaign allotments hold % units fewer than the commit takes',
            v_missing USING ERRCODE = 'check_violation';
    END IF;
END
$$;

-- A cancelled redemption's units go back where its commit took them: into its campaign's
-- allotment, at the same locations (every part of a bundle). Nothing if it took none
-- (never committed).
CREATE OR REPLACE FUNCTION stock_unredeem(p_redemption uuid, p_actor text, p_reason text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT m.item_id, m.location_id, m.campaign_id, (-sum(m.on_hand_delta))::bigint AS units
               FROM stock_movements m
              WHERE m.redemption_id = p_redemption AND m.kind IN ('redeemed', 'cancelled')
                AND m.allotted_delta <> 0
              GROUP BY m.item_id, m.location_id, m.campaign_id
             HAVING sum(m.on_hand_delta) < 0
              ORDER BY m.item_id, m.location_id
    LOOP
        PERFORM stock_move(r.item_id, r.location_id, 'cancelled', r.units, r.units,
                           r.campaign_id, p_redemption, NULL, p_actor, p_reason);
        UPDATE campaign_stock SET remaining = remaining + r.units
         WHERE campaign_id = r.campaign_id AND item_id = r.item_id
           AND location_id = r.location_id;
    END LOOP;
END
$$;

-- A returned redemption's units back on hand, each where it was redeemed from (the default
-- location if the ledger has no record); written off at once when they are not fit to
-- sell, so the ledger shows both. The item's levels are locked in location order first,
-- as every writer takes them. A bundle's return calls it once per part (p_item).
CREATE OR REPLACE FUNCTION stock_return(
    p_redemption uuid, p_item uuid, p_units bigint, p_write_off boolean, p_actor text,
    p_reason text
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_left bigint := p_units;
    v_take bigint;
    r record;
BEGIN
    PERFORM stock_lock(p_item);
    FOR r IN SELECT m.location_id, (-sum(m.on_hand_delta))::bigint AS units
               FROM stock_movements m
              WHERE m.redemption_id = p_redemption AND m.item_id = p_item
                AND m.kind IN ('redeemed', 'cancelled')
              GROUP BY m.location_id HAVING sum(m.on_hand_delta) < 0
              ORDER BY min(m.id)
    LOOP
        EXIT WHEN v_left = 0;
        v_take := least(v_left, r.units);
        PERFORM stock_move(p_item, r.location_id, 'returned', v_take, 0, NULL, p_redemption,
                           NULL, p_actor, p_reason);
        IF p_write_off THEN
            PERFORM stock_move(p_item, r.location_id, 'written_off', -v_take, 0, NULL,
                               p_redemption, NULL, p_actor, p_reason);
        END IF;
        v_left := v_left - v_take;
    END LOOP;
    IF v_left > 0 THEN
        PERFORM stock_move(p_item, stock_default_location(), 'returned', v_left, 0, NULL,
                           p_redemption, NULL, p_actor, p_reason);
        IF p_write_off THEN
            PERFORM stock_move(p_item, stock_default_location(), 'written_off', -v_left, 0,
                               NULL, p_redemption, NULL, p_actor, p_reason);
        END IF;
    END IF;
END
$$;

-- Defers the low-stock check of stock_move to the end of a change made of several
-- movements (this transaction only); stock_low_settle ends the deferral and checks the
-- item once.
CREATE OR REPLACE FUNCTION stock_low_defer() RETURNS void
LANGUAGE sql AS $$
    SELECT set_config('surge.low_stock_deferred', 'on', true)
$$;

CREATE OR REPLACE FUNCTION stock_low_settle(p_item uuid, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('surge.low_stock_deferred', 'off', true);
    IF EXISTS (SELECT 1 FROM items WHERE id = p_item
                  AND (low_stock_threshold IS NOT NULL OR stock_low)) THEN
        PERFORM stock_low_check(p_item, p_actor);
    END IF;
END
$$;
