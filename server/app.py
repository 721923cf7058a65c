"""Builds the service from Settings and runs it: stores, domain, gRPC server, background work.

Start: pool and Redis client, then the group committer and sweeper, then the gRPC server
with health SERVING. Stop (SIGTERM): health NOT_SERVING, the server refuses new calls and
lets in-flight ones finish within the grace period, the committer flushes what is queued,
the sweeper stops, connections close.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from datetime import timedelta

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from flashsale.campaigns import Campaigns
from flashsale.gate import CampaignGate
from flashsale.redemptions import Redemptions, Timing
from flashsale.sweeper import Sweeper
from inventory.items import Catalog
from points.gate import PointsGate
from points.members import Members
from protos.loyalty.v1 import (
    campaign_pb2,
    campaign_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    member_pb2,
    member_pb2_grpc,
    redemption_pb2,
    redemption_pb2_grpc,
)
from server import services
from server.config import Settings
from server.interceptors import ErrorInterceptor

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
    campaign_pb2.DESCRIPTOR.services_by_name["CampaignService"].full_name,
    member_pb2.DESCRIPTOR.services_by_name["MemberService"].full_name,
    redemption_pb2.DESCRIPTOR.services_by_name["RedemptionService"].full_name,
)


@dataclass(frozen=True)
class Stores:
    database_url: str
    redis_url: str


class App:
    def __init__(self, settings: Settings, stores: Stores) -> None:
        self.settings = settings
        self.pool = AsyncConnectionPool(
            stores.database_url,
            min_size=settings.pg_pool_min,
            max_size=settings.pg_pool_max,
            # Every statement is bounded by the commit fence: see flashsale.committer.
            kwargs={
                "autocommit": True,
                "options": f"-c statement_timeout={int(settings.commit_fence_seconds * 1000)}",
            },
            open=False,
        )
        self.redis = Redis.from_url(stores.redis_url)
        self.campaign_gate = CampaignGate(
            self.redis, record_ttl_seconds=settings.idempotency_ttl_seconds
        )
        self.points_gate = PointsGate(self.redis)
        self.catalog = Catalog(self.pool)
        self.members = Members(self.pool, self.points_gate)
        self.campaigns = Campaigns(
            self.pool, self.campaign_gate, record_ttl_s=settings.idempotency_ttl_seconds
        )
        self.redemptions = Redemptions(
            self.pool,
            campaigns=self.campaigns,
            members=self.members,
            campaign_gate=self.campaign_gate,
            points_gate=self.points_gate,
            timing=Timing(
                hold_ttl_s=settings.hold_ttl_seconds,
                commit_fence_s=settings.commit_fence_seconds,
                payment_window_s=settings.payment_window_seconds,
            ),
            max_batch=settings.commit_batch_max,
            commit_workers=settings.commit_workers,
        )
        self.sweeper = Sweeper(
            campaigns=self.campaigns,
            gate=self.campaign_gate,
            redemptions=self.redemptions,
            interval_s=settings.sweep_interval_seconds,
            watch_ended_within=timedelta(seconds=settings.payment_window_seconds + 3600),
        )
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        """Starts everything; returns the bound port (useful with port 0)."""
        await self.pool.open(wait=True, timeout=30)
        await self.redis.ping()
        self.redemptions.committer.start()
        self.sweeper.start()
        server = grpc.aio.server(interceptors=[ErrorInterceptor()])
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server(
            services.CatalogService(self.catalog), server
        )
        campaign_pb2_grpc.add_CampaignServiceServicer_to_server(
            services.CampaignService(self.campaigns), server
        )
        member_pb2_grpc.add_MemberServiceServicer_to_server(
            services.MemberService(self.members), server
        )
        redemption_pb2_grpc.add_RedemptionServiceServicer_to_server(
            services.RedemptionService(self.redemptions, self.members), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self.port = server.add_insecure_port(self.settings.grpc_address)
        await server.start()
        self.server = server
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving on %s (port %d)", self.settings.grpc_address, self.port)
        return self.port

    async def stop(self) -> None:
        """Graceful: NOT_SERVING, drain in-flight calls, flush the commit queue, close."""
        await self.health.enter_graceful_shutdown()
        if self.server is not None:
            await self.server.stop(self.settings.shutdown_grace_seconds)
        await self.redemptions.committer.close()
        await self.sweeper.stop()
        await self.redis.aclose()
        await self.pool.close()
        log.info("stopped")


async def serve(settings: Settings, stores: Stores) -> None:
    app = App(settings, stores)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await app.start()
    await stopping.wait()
    log.info("signal received: draining")
    await app.stop()
