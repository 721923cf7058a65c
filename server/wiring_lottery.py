"""The lottery's domain objects, built from the App's shared clients and settings (kept
out of server/app.py, which is near its size limit)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flashsale.model import Timing
from lottery.draws import Draws
from lottery.gate import LotteryGate
from lottery.lotteries import Lotteries

if TYPE_CHECKING:
    from server.app import App


def build(app: App) -> tuple[LotteryGate, Lotteries, Draws]:
    settings = app.settings
    gate = LotteryGate(
        app.redis,
        calls=app.calls,
        metrics=app.metrics,
        record_ttl_seconds=settings.idempotency_ttl_seconds,
        refusal_ttl_seconds=settings.refusal_ttl_seconds,
        retention_after_end_seconds=settings.campaign_key_retention_seconds,
    )
    lotteries = Lotteries(app.pool, gate)
    draws = Draws(
        app.pool,
        lotteries=lotteries,
        members=app.points.members,
        gate=gate,
        points_gate=app.points_gate,
        timing=Timing(
            hold_ttl_s=settings.hold_ttl_seconds,
            commit_fence_s=settings.commit_fence_seconds,
            payment_window_s=settings.payment_window_seconds,
        ),
        max_batch=settings.commit_batch_max,
        workers=1,  # draws are a trickle beside redemptions: one batch at a time
        max_waiting=settings.commit_queue_max,
    )
    return gate, lotteries, draws
