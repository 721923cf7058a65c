-- The low-stock signal (migration 0016, inventory/low_stock.py). An item is low while its
-- available units (items.stock_on_hand) are below its low_stock_threshold; items.stock_low
-- remembers the verdict so each crossing writes one event, in the transaction that made it.

-- Re-evaluates one item whose row the caller has locked (stock_move after changing its
-- available units; SetLowStockThreshold after changing the threshold). On a crossing it
-- flips stock_low and appends stock.low (now below) or stock.replenished (back at or above
-- the threshold, or the threshold cleared: nobody watches it any more). Returns whether the
-- item is low now.
CREATE OR REPLACE FUNCTION stock_low_check(p_item uuid, p_actor text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_low boolean;
BEGIN
    SELECT i.sku, i.stock_on_hand, i.low_stock_threshold, i.stock_low INTO r
      FROM items i WHERE i.id = p_item;
    v_low := coalesce(r.stock_on_hand < r.low_stock_threshold, false);
    IF v_low IS DISTINCT FROM r.stock_low THEN
        UPDATE items SET stock_low = v_low WHERE id = p_item;
        PERFORM append_event(
            CASE WHEN v_low THEN 'stock.low' ELSE 'stock.replenished' END, 'item', p_item::text,
            jsonb_build_object('item_id', p_item, 'sku', r.sku, 'available', r.stock_on_hand,
                               'threshold', r.low_stock_threshold),
            p_actor);
    END IF;
    RETURN v_low;
END
$$;
