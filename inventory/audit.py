"""`surge audit`'s checks of the stock ledger (docs/inventory.md): each query lists what
breaks an invariant, so an empty answer is a pass. flashsale/audit.py runs them with the
rest."""

from __future__ import annotations

from flashsale.model import SOLD_SQL

AUDIT_CHECKS: list[tuple[str, str]] = [
    (
        "stock level differs from the sum of its movements",
        "SELECT coalesce(s.item_id, m.item_id)::text, coalesce(s.location_id, m.location_id)::text, "
        "s.on_hand, s.allotted, m.on_hand, m.allotted FROM stock_levels s FULL JOIN ("
        "  SELECT item_id, location_id, sum(on_hand_delta) AS on_hand, "
        "  sum(allotted_delta) AS allotted FROM stock_movements GROUP BY item_id, location_id"
        ") m ON m.item_id = s.item_id AND m.location_id = s.location_id "
        "WHERE s.on_hand IS DISTINCT FROM m.on_hand OR s.allotted IS DISTINCT FROM m.allotted",
    ),
    (
        "item's available stock differs from its locations' (on hand - allotted)",
        "SELECT i.id::text, i.stock_on_hand, coalesce(sum(s.on_hand - s.allotted), 0) "
        "FROM items i LEFT JOIN stock_levels s ON s.item_id = i.id GROUP BY i.id "
        "HAVING i.stock_on_hand <> coalesce(sum(s.on_hand - s.allotted), 0)",
    ),
    (
        "campaign's allotment by location differs from units allotted - units committed",
        # Per part: a bundle's allotment of each item is its bundles times the quantity.
        "SELECT c.id::text, p.item_id::text, (c.units_allotted - c.units_committed) * p.quantity, "
        "coalesce(sum(cs.remaining), 0) FROM campaigns c "
        "JOIN campaign_parts p ON p.campaign_id = c.id "
        "LEFT JOIN campaign_stock cs ON cs.campaign_id = c.id AND cs.item_id = p.item_id "
        "GROUP BY c.id, p.item_id, p.quantity "
        "HAVING (c.units_allotted - c.units_committed) * p.quantity "
        "<> coalesce(sum(cs.remaining), 0)",
    ),
    (
        "units allotted at a location differ from its campaigns' allotments there",
        "SELECT coalesce(s.item_id, a.item_id)::text, coalesce(s.location_id, a.location_id)::text, "
        "s.allotted, a.remaining FROM (SELECT * FROM stock_levels WHERE allotted <> 0) s "
        "FULL JOIN (SELECT cs.item_id, cs.location_id, sum(cs.remaining) AS remaining "
        "  FROM campaign_stock cs "
        "  WHERE cs.remaining <> 0 GROUP BY cs.item_id, cs.location_id) a "
        "ON a.item_id = s.item_id AND a.location_id = s.location_id "
        "WHERE s.allotted IS DISTINCT FROM a.remaining",
    ),
    (
        "redemption's units taken from stock differ from its quantity (sold) or zero",
        # A bundle's redemption takes its quantity times each part's quantity of each item:
        # checked per part, so one part too many and another too few cannot cancel out.
        "SELECT r.id::text, p.item_id::text, r.status, r.quantity * p.quantity, "
        "coalesce(m.units, 0) "
        "FROM redemptions r JOIN campaign_parts p ON p.campaign_id = r.campaign_id "
        "LEFT JOIN (SELECT redemption_id, item_id, -sum(on_hand_delta) AS units "
        "  FROM stock_movements WHERE kind IN ('redeemed', 'cancelled') "
        "  GROUP BY redemption_id, item_id) m "
        "ON m.redemption_id = r.id AND m.item_id = p.item_id "
        "WHERE coalesce(m.units, 0) <> "
        f"CASE WHEN r.status IN {SOLD_SQL} THEN r.quantity * p.quantity ELSE 0 END",
    ),
    (
        "item's low-stock flag disagrees with its available units and threshold",
        "SELECT id::text, stock_on_hand, low_stock_threshold, stock_low FROM items "
        "WHERE stock_low IS DISTINCT FROM "
        "(low_stock_threshold IS NOT NULL AND stock_on_hand < low_stock_threshold)",
    ),
]
