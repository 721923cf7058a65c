"""Points back during events (issue 16 item 4): a campaign's points_back_percent of the
points a redemption paid comes back to the member as an earned lot, in the transaction that
commits the redemption, and is taken back in the one that cancels or returns it.

- Decided at admission: commit_redemptions() computes floor(points_total x percent / 100)
  from the locked campaign row and stores it in redemptions.points_back (DESIGN-NOTES,
  invariant 12: replayed unchanged). A percent changed by UpdateCampaign applies to
  redemptions admitted after the change.
- Posted with the commit for a points-only redemption (set-based, in the same SQL), at
  confirmation for a points + cash one (`post`): nothing is given back for points still
  waiting for a payment, and nothing for a payment that never comes.
- Reversed (`reverse`) when a sold redemption is cancelled or returned for a refund, after
  the refund of the points paid, so the two net: the member ends where they started. If
  the member already spent them, what the balance cannot cover becomes debt, the ledger's
  rule for a reversed earning (points/corrections.py). An exchange keeps them.

The SQL is flashsale/sql/points_back.sql; docs/design.md, "Points back", has the why."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from common import validation
from flashsale.model import SOLD_SQL
from points.program import ExpiryPolicy

# 100 = every point paid comes back; 1000 (ten times) is the CHECK's bound (migration 0018).
MAX_PERCENT = 1000


def check_percent(value: int) -> int:
    """INVALID_ARGUMENT naming points_back_percent unless 0..MAX_PERCENT."""
    validation.int_range("points_back_percent", value, minimum=0, maximum=MAX_PERCENT)
    return value


async def post(conn: AsyncConnection[Any], row: dict[str, Any], expiry: ExpiryPolicy) -> None:
    """A confirmed points + cash redemption's points back, as decided at admission."""
    if row["points_back"] > 0:
        await conn.execute(
            "SELECT post_points_back(%s, %s, %s, %s)",
            (row["member_id"], row["id"], row["points_back"], expiry.expires_at(_now())),
        )


async def reverse(conn: AsyncConnection[Any], row: dict[str, Any], reason: str) -> None:
    """A sold redemption's points back taken back (the caller refunds the points paid
    first). Only for a redemption whose points back were posted: a sold one."""
    if row["points_back"] > 0:
        await conn.execute(
            "SELECT reverse_points_back(%s, %s, %s, %s)",
            (row["member_id"], row["id"], row["points_back"], f"points back reversed: {reason}"),
        )


def _now() -> datetime:
    return datetime.now(UTC)


# For `surge audit` (flashsale/audit_checks.py): each redemption's points-back entries net
# (amount - debt_change: a reversal's shortfall is debt, still taken back) to its
# points_back while it is sold (an exchange's RETURNED one keeps them), to 0 otherwise
# (returned for a refund or cancelled: reversed; pending or expired: never posted).
AUDIT_CHECKS: list[tuple[str, str]] = [
    (
        "redemption's points back differ from its points-back ledger entries",
        "SELECT r.id::text, r.status, r.points_back, "
        "coalesce(sum(l.amount - l.debt_change), 0) AS posted FROM redemptions r "
        "LEFT JOIN ledger_entries l ON l.member_id = r.member_id "
        "AND l.reference = 'points_back:' || r.id::text "
        "WHERE r.points_back > 0 GROUP BY r.id "
        "HAVING coalesce(sum(l.amount - l.debt_change), 0) <> "
        "CASE WHEN r.status = 'RETURNED' AND r.replaced_by IS NULL THEN 0 "
        f"WHEN r.status IN {SOLD_SQL} THEN r.points_back ELSE 0 END",
    ),
]
