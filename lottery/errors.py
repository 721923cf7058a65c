"""The lottery's refusals, as subclasses of common/errors.py's (so server/errors.py maps
them without a change: Refusal is FAILED_PRECONDITION with the reason below).

Refusal
├── LotteryNotActive(lottery_id, starts_at, ends_at)
└── LimitExceeded
    └── DrawLimitExceeded(lottery_id, period, limit, taken)   per UTC day or in total
"""

from __future__ import annotations

from common.errors import LimitExceeded, Refusal


class LotteryNotActive(Refusal):
    reason = "LOTTERY_NOT_ACTIVE"

    def __init__(self, lottery_id: str, starts_at: str, ends_at: str) -> None:
        super().__init__(f"lottery {lottery_id} runs from {starts_at} to {ends_at}")
        self.lottery_id, self.starts_at, self.ends_at = lottery_id, starts_at, ends_at

    def metadata(self) -> dict[str, str]:
        return {"lottery_id": self.lottery_id, "starts_at": self.starts_at, "ends_at": self.ends_at}


class DrawLimitExceeded(LimitExceeded):
    """The member's draws of the lottery reached its limit (LIMIT_EXCEEDED, as Redeem's)."""

    def __init__(self, lottery_id: str, period: str, limit: int, taken: int) -> None:
        super().__init__(lottery_id, limit, taken)
        self.message = f"per-member {period} limit is {limit} draws; member has drawn {taken}"
        self.period = period

    def metadata(self) -> dict[str, str]:
        return {
            "lottery_id": self.campaign_id,
            "period": self.period,  # "daily" (UTC day) or "total"
            "per_member_limit": str(self.limit),
            "draws_taken": str(self.taken),
        }
