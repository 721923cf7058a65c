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

DRAW_BATCH_MAX = 32


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
        # commit_draws works draw by draw (a prize redemption each), several ms a draw: a
        # batch must finish well inside the commit fence (the statement timeout), so it is
        # smaller than a redemption batch (measured: 109 draws overran a 1 s fence on a
        # loaded 2-core box).
        max_batch=min(settings.commit_batch_max, DRAW_BATCH_MAX),
        workers=1,  # draws are a trickle beside redemptions: one batch at a time
        max_waiting=settings.commit_queue_max,
    )
    return gate, lotteries, draws
