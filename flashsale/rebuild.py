"""Rebuild Redis from PostgreSQL (invariant 7), never blindly overwriting live counters:
state absent is created; state present only takes mirror values whose PostgreSQL version is
newer; in-flight holds are never touched. Safe to run during a sale, and again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from psycopg_pool import AsyncConnectionPool

from flashsale.campaigns import Campaigns
from points.gate import MemberMirror, PointsGate


@dataclass(frozen=True)
class RebuildReport:
    campaigns_created: int
    campaigns_refreshed: int
    members: int


async def rebuild_cache(
    pool: AsyncConnectionPool,
    campaigns: Campaigns,
    points_gate: PointsGate,
    *,
    ended_within: timedelta,
) -> RebuildReport:
    created = refreshed = 0
    for campaign_id in await campaigns.ids_to_watch(ended_within=ended_within):
        if await campaigns.load_into_gate(campaign_id):
            created += 1
        else:
            refreshed += 1
    members = 0
    await points_gate.load_scripts()  # the pipelines below queue bare EVALSHA
    # A server-side cursor (named, inside a transaction): there may be many members.
    async with (
        pool.connection() as conn,
        conn.transaction(),
        conn.cursor(name="rebuild_members") as cur,
    ):
        await cur.execute(
            "SELECT id::text, points_balance - points_held, version, frozen, redemption_eligible "
            "FROM members"
        )
        while rows := await cur.fetchmany(500):
            # One pipeline per chunk (per primary on a cluster); NOSCRIPT redoes the chunk.
            await points_gate.mirror_many(
                [(member_id, MemberMirror(*mirror)) for member_id, *mirror in rows]
            )
            members += len(rows)
    return RebuildReport(created, refreshed, members)
