"""The audit's PostgreSQL checks (flashsale/audit.py runs them): each query lists what
breaks an invariant of DESIGN-NOTES, so an empty answer is a pass. The outbox's and the
stock ledger's own checks are appended from their modules."""

from __future__ import annotations

from flashsale import outbox, points_back
from flashsale.model import SOLD_SQL
from inventory import audit as stock_audit
from points.checkin import store as checkin_store

PENDING_OR_SOLD_SQL = SOLD_SQL[:-1] + ", 'PENDING_PAYMENT')"

PG_CHECKS: list[tuple[str, str]] = [
    (
        "campaign over-redeemed (committed + held > allotted)",
        "SELECT id::text, units_committed, units_held, units_allotted FROM campaigns "
        "WHERE units_committed + units_held > units_allotted",
    ),
    (
        "campaign counters disagree with its redemptions",
        "SELECT c.id::text, c.units_committed, c.units_held, "
        f"coalesce(sum(r.quantity) FILTER (WHERE r.status IN {SOLD_SQL}), 0) AS committed, "
        "coalesce(sum(r.quantity) FILTER (WHERE r.status = 'PENDING_PAYMENT'), 0) AS pending "
        # An exchange's replacement took item stock, not campaign units: not counted.
        "FROM campaigns c LEFT JOIN redemptions r ON r.campaign_id = c.id "
        "AND r.replacement_of IS NULL GROUP BY c.id "
        f"HAVING c.units_committed <> coalesce(sum(r.quantity) FILTER (WHERE r.status IN {SOLD_SQL}), 0) "
        "OR c.units_held <> coalesce(sum(r.quantity) FILTER (WHERE r.status = 'PENDING_PAYMENT'), 0)",
    ),
    (
        "per-member units disagree with redemptions or exceed the limit",
        "SELECT x.campaign_id::text, x.member_id::text, x.units, coalesce(cm.units_taken, 0), "
        "c.per_member_limit FROM ("
        "  SELECT campaign_id, member_id, sum(quantity) AS units FROM redemptions "
        f"  WHERE status IN {PENDING_OR_SOLD_SQL} AND replacement_of IS NULL "
        "  GROUP BY campaign_id, member_id"
        ") x JOIN campaigns c ON c.id = x.campaign_id "
        "LEFT JOIN campaign_members cm ON cm.campaign_id = x.campaign_id "
        "AND cm.member_id = x.member_id "
        "WHERE x.units <> coalesce(cm.units_taken, 0) OR x.units > c.per_member_limit",
    ),
    (
        "negative balance or held points above balance",
        "SELECT id::text, points_balance, points_held FROM members "
        "WHERE points_balance < 0 OR points_held < 0 OR points_held > points_balance",
    ),
    (
        "balance differs from the sum of the ledger",
        "SELECT m.id::text, m.points_balance, coalesce(sum(l.amount), 0) FROM members m "
        "LEFT JOIN ledger_entries l ON l.member_id = m.id GROUP BY m.id "
        "HAVING m.points_balance <> coalesce(sum(l.amount), 0)",
    ),
    (
        "balance differs from the sum of its lots' remainders (balance = lots, debt apart)",
        "SELECT m.id::text, m.points_balance, coalesce(sum(l.remaining), 0) FROM members m "
        "LEFT JOIN point_lots l ON l.member_id = m.id GROUP BY m.id "
        "HAVING m.points_balance <> coalesce(sum(l.remaining), 0)",
    ),
    (
        "lot with a negative remainder, or more left than it held",
        "SELECT id::text, member_id::text, amount, remaining FROM point_lots "
        "WHERE remaining < 0 OR remaining > amount",
    ),
    (
        "debt negative or different from the sum of the ledger's debt changes",
        "SELECT m.id::text, m.points_debt, coalesce(sum(l.debt_change), 0) FROM members m "
        "LEFT JOIN ledger_entries l ON l.member_id = m.id GROUP BY m.id "
        "HAVING m.points_debt < 0 OR m.points_debt <> coalesce(sum(l.debt_change), 0)",
    ),
    (
        "held points differ from redemptions waiting for payment",
        "SELECT m.id::text, m.points_held, coalesce(sum(r.points_total), 0) FROM members m "
        "LEFT JOIN redemptions r ON r.member_id = m.id AND r.status = 'PENDING_PAYMENT' "
        "GROUP BY m.id HAVING m.points_held <> coalesce(sum(r.points_total), 0)",
    ),
    (
        "committed redemption of a virtual item without a code",
        "SELECT r.id::text FROM redemptions r JOIN campaigns c ON c.id = r.campaign_id "
        "JOIN items i ON i.id = c.item_id WHERE i.kind = 'VIRTUAL' AND r.status = 'COMMITTED' "
        "AND r.redemption_code IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM item_codes ic WHERE ic.redemption_id = r.id)",
    ),
    (
        "pool code whose state disagrees with its redemption's",
        "SELECT ic.id::text, ic.status, r.status FROM item_codes ic "
        "JOIN redemptions r ON r.id = ic.redemption_id WHERE (ic.status = 'REVOKED') "
        "= (r.status = 'COMMITTED')",
    ),
    (
        "exchange links disagree (a replacement of a redemption not RETURNED with it as "
        "replaced_by, or one that cost points or cash)",
        "SELECT r.id::text, r.replacement_of::text FROM redemptions r "
        "LEFT JOIN redemptions o ON o.id = r.replacement_of WHERE r.replacement_of IS NOT NULL "
        "AND (o.status IS DISTINCT FROM 'RETURNED' OR o.replaced_by IS DISTINCT FROM r.id "
        "OR r.points_total <> 0 OR r.cash_total_cents <> 0)",
    ),
    (
        "negative stock on hand",
        "SELECT id::text, stock_on_hand FROM items WHERE stock_on_hand < 0",
    ),
]


PG_CHECKS += outbox.AUDIT_CHECKS
PG_CHECKS += stock_audit.AUDIT_CHECKS
PG_CHECKS += points_back.AUDIT_CHECKS
PG_CHECKS += checkin_store.AUDIT_CHECKS
