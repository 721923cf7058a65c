"""Refusals on the redeem path: the domain error for a refusal Redis remembered or
PostgreSQL decided, and the surge_redemptions_total outcome of a failed Redeem."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from common import dependencies
from common.errors import (
    BelowRedemptionThreshold,
    CampaignNotActive,
    CommitQueueFull,
    DomainError,
    HoldExpired,
    IdempotencyKeyReused,
    InsufficientPoints,
    InvalidArgument,
    LimitExceeded,
    MemberFrozen,
    NotFound,
    RequestInProgress,
    SoldOut,
    Unavailable,
)

if TYPE_CHECKING:
    from flashsale.campaigns import CampaignMeta
    from flashsale.committer import CommitResult


_OUTCOMES: dict[type[BaseException], str] = {
    SoldOut: "sold_out",
    InsufficientPoints: "insufficient_points",
    LimitExceeded: "limit_exceeded",
    CampaignNotActive: "campaign_not_active",
    MemberFrozen: "member_frozen",
    BelowRedemptionThreshold: "below_threshold",
    IdempotencyKeyReused: "key_reused",
    InvalidArgument: "invalid",
    NotFound: "not_found",
    RequestInProgress: "retry",
    HoldExpired: "retry",
    Unavailable: "unavailable",
    CommitQueueFull: "overloaded",
}


def outcome_of(exc: BaseException) -> str:
    """The surge_redemptions_total outcome of a failed Redeem: the most specific class wins."""
    for cls in type(exc).__mro__:
        if cls in _OUTCOMES:
            return _OUTCOMES[cls]
    failure = dependencies.failure_of(exc)
    if failure is not None:
        return "retry" if failure.lost_race else "unavailable"
    return "error"


def refusal(meta: CampaignMeta, member_id: str, reason: Any, n1: Any, n2: Any) -> DomainError:
    a, b = int(n1 or 0), int(n2 or 0)
    match reason:
        case "SOLD_OUT":
            return SoldOut(meta.id, a)
        case "LIMIT_EXCEEDED":
            return LimitExceeded(meta.id, a or meta.per_member_limit, b)
        case "INSUFFICIENT_POINTS":
            return InsufficientPoints(member_id, a, b)
        case "MEMBER_FROZEN":
            return MemberFrozen(member_id)
        case "BELOW_REDEMPTION_THRESHOLD":
            return BelowRedemptionThreshold(member_id)
    return not_active(meta)


def pg_refusal(meta: CampaignMeta, member_id: str, result: CommitResult) -> DomainError:
    if result.outcome == "SOLD_OUT" and result.campaign is not None:
        if meta.code_pool:  # units may be left with no code to give them: none to sell
            return SoldOut(meta.id, 0)
        return SoldOut(meta.id, max(0, meta.units_allotted - result.campaign.taken))
    if result.outcome == "LIMIT_EXCEEDED" and result.campaign is not None:
        return LimitExceeded(meta.id, meta.per_member_limit, result.campaign.member_taken)
    if result.outcome == "INSUFFICIENT_POINTS" and result.member is not None:
        return InsufficientPoints(member_id, max(0, result.member.spendable), 0)
    return refusal(meta, member_id, result.outcome, 0, 0)


def not_active(meta: CampaignMeta) -> CampaignNotActive:
    return CampaignNotActive(meta.id, meta.starts_at.isoformat(), meta.ends_at.isoformat())
