"""Loading a campaign into the Redis gate from PostgreSQL (the redeem path on NOT_LOADED,
a change's follow-up, the sweeper and rebuild-cache): records of recent redemptions first,
so replays keep their outcome, then the state, created if absent or refreshed where
PostgreSQL is newer. Never overwrites live counters."""

from __future__ import annotations

from datetime import datetime, timedelta

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from common.errors import NotFound
from flashsale import shards
from flashsale.gate import CampaignGate, CampaignLoad, hold_id


async def load_campaign(
    pool: AsyncConnectionPool, gate: CampaignGate, campaign_id: str, *, record_ttl_s: int
) -> tuple[bool, int]:
    """(whether the state was created, the campaign's stock shards)."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT units_allotted, per_member_limit, starts_at, ends_at, "
            "units_committed + units_held AS taken, version, meta_version, stock_shards "
            "FROM campaigns WHERE id = %s",
            (campaign_id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound("campaign", campaign_id)
        await cur.execute(
            "SELECT member_id::text, units_taken, version FROM campaign_members "
            "WHERE campaign_id = %s",
            (campaign_id,),
        )
        members = [(r["member_id"], r["units_taken"], r["version"]) for r in await cur.fetchall()]
        await cur.execute(
            "SELECT member_id::text, idempotency_key, request_hash FROM redemptions "
            "WHERE campaign_id = %s AND created_at > now() - %s",
            (campaign_id, timedelta(seconds=record_ttl_s)),
        )
        records = [
            (hold_id(r["member_id"], r["idempotency_key"]), r["request_hash"])
            for r in await cur.fetchall()
        ]
    k = row["stock_shards"]
    if k > 1:  # each record on its member's home shard
        homes: dict[str, list[tuple[str, str]]] = {}
        for hold, fingerprint in records:
            member = hold.split(":", 1)[0]
            homes.setdefault(shards.home(campaign_id, member, k), []).append((hold, fingerprint))
        for shard, done in homes.items():
            await gate.restore_records(shard, done)
    else:
        await gate.restore_records(campaign_id, records)
    state = CampaignLoad(
        allotted=row["units_allotted"],
        limit=row["per_member_limit"],
        starts_ms=_ms(row["starts_at"]),
        ends_ms=_ms(row["ends_at"]),
        taken=row["taken"],
        version=row["version"],
        members=members,
        meta_version=row["meta_version"],
    )
    if k > 1:
        return await gate.shards.load(campaign_id, k, state), k
    return await gate.load(campaign_id, state), k


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
