"""The group commit's linger (SURGE_COMMIT_LINGER_MS): a commit waits for redemptions that
are still being admitted, and never waits when nobody is on the way."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import StartServer
from tests.factories import key

# Far longer than a redemption takes here, so a wait is unmistakable; at most half of the
# test settings' hold TTL less the commit fence (3 s - 1 s), as the settings require.
LINGER_MS = 1_000


async def test_a_lone_redemption_does_not_wait_for_the_linger(start_server: StartServer) -> None:
    running = await start_server(commit_linger_ms=LINGER_MS)
    api = running.api
    campaign = await api.campaign(units=10, limit=10, points_price=1)
    member = await api.member(points=100)
    await api.redeem(member.id, campaign.id)  # warm-up: metadata cached, connections open

    started = time.perf_counter()
    await api.redeem(member.id, campaign.id, idem=key())
    elapsed = time.perf_counter() - started

    assert elapsed < LINGER_MS / 1000 / 2, f"a lone redemption took {elapsed:.3f}s"


async def test_concurrent_redemptions_wait_for_each_other_and_share_a_batch(
    start_server: StartServer,
) -> None:
    running = await start_server(commit_linger_ms=LINGER_MS)
    api = running.api
    campaign = await api.campaign(units=100, limit=100, points_price=1)
    members = [(await api.member(points=100)).id for _ in range(20)]
    await api.redeem(members[0], campaign.id)  # warm-up
    committer = running.app.committer
    before = committer.batches

    await asyncio.gather(*(api.redeem(m, campaign.id, idem=key()) for m in members))

    # Without the linger, the first arrival commits alone and the rest follow in batches as
    # they come; with it, the first waits for the others being admitted.
    assert committer.batches - before <= 2, committer.batches - before
    assert (await api.get_campaign(campaign.id)).units_committed == 21


async def test_no_linger_commits_at_once(start_server: StartServer) -> None:
    running = await start_server(commit_linger_ms=0)
    api = running.api
    campaign = await api.campaign(units=100, limit=100, points_price=1)
    members = [(await api.member(points=100)).id for _ in range(20)]
    await api.redeem(members[0], campaign.id)

    await asyncio.gather(*(api.redeem(m, campaign.id, idem=key()) for m in members))

    assert (await api.get_campaign(campaign.id)).units_committed == 21
