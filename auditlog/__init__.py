"""The audit trail: who changed what, by which request, when.

Every operator change (stock, campaigns, member state, points adjustments, tier overrides)
calls `record()` inside the transaction that makes the change, so the event and the change
commit together or not at all, and a change refused or rolled back leaves no event. A
replay of an idempotency key changes nothing and records nothing. Who and which request
come from common.actor (the gRPC edge sets them around each call); this package knows
nothing of gRPC. The table is append-only (a trigger refuses UPDATE and DELETE:
auditlog/sql/audit_events.sql); secrets in the content are masked (auditlog.redaction).

Named auditlog, not audit: `surge audit` is the invariant check of flashsale/audit.py.
Calls go down: inventory, points and flashsale call this package; it calls only common.
"""

from __future__ import annotations

from auditlog.model import (
    ACCEPT_RETURN,
    ACTIONS,
    ADJUST_POINTS,
    ADJUST_STOCK,
    CAMPAIGN,
    CARD,
    CARD_TYPE,
    CREATE_CAMPAIGN,
    CREATE_CARD_TYPE,
    CREATE_EARN_RULE,
    CREATE_ITEM,
    CREATE_LOCATION,
    CREATE_LOTTERY,
    CREATE_PRODUCT,
    EARN_RULE,
    END_CAMPAIGN,
    END_EARN_RULE,
    EVALUATE_TIER,
    FREEZE_MEMBER,
    IMPORT_CODES,
    ISSUE_CARDS,
    ITEM,
    LOCATION,
    LOTTERY,
    MARK_DELIVERED,
    MARK_SHIPPED,
    MEMBER,
    OPEN_CARD,
    PRODUCT,
    REDEMPTION,
    REJECT_RETURN,
    REPLACE_CARD,
    REPORT_CARD_LOST,
    RETIRE_ITEM,
    SET_LOW_STOCK_THRESHOLD,
    SET_MANUAL_TIER,
    START_PACKING,
    SUBMIT_STOCK_COUNT,
    TARGET_KINDS,
    TRANSFER_STOCK,
    UNFREEZE_MEMBER,
    UNLOCK_CARD,
    UPDATE_CAMPAIGN,
    UPDATE_ITEM,
    AuditEvent,
    AuditPage,
    AuditQuery,
)
from auditlog.redaction import REDACTED, redact
from auditlog.store import record
from auditlog.trail import AuditTrail

__all__ = [
    "ACCEPT_RETURN",
    "ACTIONS",
    "ADJUST_POINTS",
    "ADJUST_STOCK",
    "CAMPAIGN",
    "CARD",
    "CARD_TYPE",
    "CREATE_CAMPAIGN",
    "CREATE_CARD_TYPE",
    "CREATE_EARN_RULE",
    "CREATE_ITEM",
    "CREATE_LOCATION",
    "CREATE_LOTTERY",
    "CREATE_PRODUCT",
    "EARN_RULE",
    "END_CAMPAIGN",
    "END_EARN_RULE",
    "EVALUATE_TIER",
    "FREEZE_MEMBER",
    "IMPORT_CODES",
    "ISSUE_CARDS",
    "ITEM",
    "LOCATION",
    "LOTTERY",
    "MARK_DELIVERED",
    "MARK_SHIPPED",
    "MEMBER",
    "OPEN_CARD",
    "PRODUCT",
    "REDACTED",
    "REDEMPTION",
    "REJECT_RETURN",
    "REPLACE_CARD",
    "REPORT_CARD_LOST",
    "RETIRE_ITEM",
    "SET_LOW_STOCK_THRESHOLD",
    "SET_MANUAL_TIER",
    "START_PACKING",
    "SUBMIT_STOCK_COUNT",
    "TARGET_KINDS",
    "TRANSFER_STOCK",
    "UNFREEZE_MEMBER",
    "UNLOCK_CARD",
    "UPDATE_CAMPAIGN",
    "UPDATE_ITEM",
    "AuditEvent",
    "AuditPage",
    "AuditQuery",
    "AuditTrail",
    "record",
    "redact",
]
