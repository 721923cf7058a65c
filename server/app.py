"""Builds the service from Settings and runs it: stores, domain, gRPC server, background work.

Start: pool and Redis client, then the group committer, leadership (common/leader.py: the
leader alone runs the cluster-wide jobs) and sweeper, then the gRPC server with health SERVING (the API services only while Redis and PostgreSQL answer: see
server/readiness.py). Stop (SIGTERM): health NOT_SERVING while calls are still served for
the drain window (SURGE_DRAIN_SECONDS, so load balancers stop sending), then the server
refuses new calls and lets in-flight ones finish within the grace period, the committer
flushes what is queued, the sweeper stops, the leader steps down, connections close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import prometheus_client
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, multiprocess
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import RedisCluster

from auditlog import AuditTrail
from cards.cards import Cards
from common import redis_client, redis_memory
from common.autopipeline import AutoPipeline
from common.leader import Leadership
from common.metrics import Metrics, build_versions
from common.ratelimit import TokenBuckets
from events.stream import EventStream
from flashsale.admission import Admission
from flashsale.campaigns import Campaigns
from flashsale.changes import CampaignChanges
from flashsale.committer import GroupCommitter
from flashsale.fulfilment import Fulfilment
from flashsale.gate import CampaignGate
from flashsale.lifecycle import Lifecycle
from flashsale.model import Timing
from flashsale.offers import Offers
from flashsale.pricing import Pricer
from flashsale.quotes import Quotes
from flashsale.reads import RedemptionReads
from flashsale.settle import Settler
from flashsale.sweeper import Sweeper
from inventory.codes import CodePools
from inventory.counts import StockCounts
from inventory.items import Catalog
from inventory.locations import Locations
from inventory.low_stock import LowStock
from points import PointsLedger
from points.gate import PointsGate
from points.jobs import LedgerJobs
from server import reflection, registry, tls, wiring_checkin, wiring_lottery
from server.config import Settings
from server.credentials import Verifier
from server.generic_handlers import GenericHandlersOnly
from server.interceptors import EdgeInterceptor
from server.logs import config_summary
from server.readiness import DependencyProbe
from server.registry import SERVICE_NAMES, rpc_methods

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stores:
    database_url: str
    redis_url: str


class App:
    def __init__(
        self, settings: Settings, stores: Stores, *, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        self.stores = stores
        # A fresh registry per App: tests (and several Apps in one process) never share series.
        self.metrics = Metrics(registry or CollectorRegistry(auto_describe=True))
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
        self.redis = redis_client.service_client(
            stores.redis_url, max_connections=settings.redis_max_connections
        )
        # One auto-pipeline for both gates: a redemption's reserve and another's hold share
        # a round trip.
        self.calls = AutoPipeline.connect(stores.redis_url, metrics=self.metrics)
        self.campaign_gate = CampaignGate(
            self.redis,
            calls=self.calls,
            record_ttl_seconds=settings.idempotency_ttl_seconds,
            refusal_ttl_seconds=settings.refusal_ttl_seconds,
            retention_after_end_seconds=settings.campaign_key_retention_seconds,
            metrics=self.metrics,
        )
        self.points_gate = PointsGate(
            self.redis,
            calls=self.calls,
            metrics=self.metrics,
            key_ttl_seconds=settings.refusal_ttl_seconds,
            idle_seconds=settings.member_key_idle_seconds,
        )
        self.catalog = Catalog(self.pool)
        self.locations = Locations(self.pool)
        self.code_pools = CodePools(self.pool)
        self.low_stock = LowStock(self.pool)
        self.stock_counts = StockCounts(self.pool)
        self.points = PointsLedger(self.pool, self.points_gate, program=settings.program)
        self.ledger_jobs = LedgerJobs(self.pool, self.points)
        self.campaigns = Campaigns(
            self.pool,
            self.campaign_gate,
            record_ttl_s=settings.idempotency_ttl_seconds,
            tiers=[t.name for t in settings.program.tiers],
        )
        # The redemption path: admission holds in Redis and hands entries to the group
        # committer, whose batches the settler mirrors back into Redis before anyone is
        # answered; the lifecycle changes redemptions afterwards, the reads read them.
        self.settler = Settler(
            self.pool,
            campaign_gate=self.campaign_gate,
            points_gate=self.points_gate,
            campaigns=self.campaigns,
            members=self.points.members,
            metrics=self.metrics,
        )
        self.committer = GroupCommitter(
            self.pool,
            after_commit=self.settler.settle_batch,
            max_batch=settings.commit_batch_max,
            workers=settings.commit_workers,
            linger_s=settings.commit_linger_ms / 1000,
            max_waiting=settings.commit_queue_max,
            metrics=self.metrics,
            points_expiry=settings.program.expiry,
        )
        # Price rules (flashsale/pricing.py): one tier cache for Redeem and QuotePrice.
        self.pricer = Pricer(self.points.members.current_tier)
        self.admission = Admission(
            self.pool,
            campaigns=self.campaigns,
            members=self.points.members,
            campaign_gate=self.campaign_gate,
            points_gate=self.points_gate,
            committer=self.committer,
            settler=self.settler,
            timing=Timing(
                hold_ttl_s=settings.hold_ttl_seconds,
                commit_fence_s=settings.commit_fence_seconds,
                payment_window_s=settings.payment_window_seconds,
            ),
            metrics=self.metrics,
            pricer=self.pricer,
        )
        self.quotes = Quotes(self.campaigns, self.pricer)
        self.lifecycle = Lifecycle(
            self.pool,
            self.settler,
            currency=settings.program.currency,
            points_expiry=settings.program.expiry,
        )
        self.fulfilment = Fulfilment(
            self.pool, self.settler, return_window_s=settings.return_window_seconds
        )
        self.redemption_reads = RedemptionReads(self.pool)
        self.campaign_changes = CampaignChanges(self.pool, self.campaigns, self.settler)
        self.offers = Offers(self.pool, self.campaign_gate)
        self.audit_trail = AuditTrail(self.pool)
        # Lottery draws: their own gate and group committer (lottery/draws.py).
        self.lottery_gate, self.lotteries, self.draws = wiring_lottery.build(self)
        self.checkins = wiring_checkin.build(self)  # daily check-in (points/checkin/)
        self.cards = Cards(self.pool, settings.program)  # member cards: PostgreSQL only
        # WatchEvents: its own small pool and one shared LISTEN (events/stream.py); the
        # leader prunes past retention.
        self.event_stream = EventStream(
            stores.database_url,
            metrics=self.metrics,
            retention=timedelta(seconds=settings.events_retention_seconds),
        )
        self.sweeper = Sweeper(
            pool=self.pool,
            redis=self.redis,
            metrics=self.metrics,
            campaigns=self.campaigns,
            gate=self.campaign_gate,
            settler=self.settler,
            lifecycle=self.lifecycle,
            interval_s=settings.sweep_interval_seconds,
            hold_ttl_s=settings.hold_ttl_seconds,
            watch_ended_within=timedelta(seconds=settings.payment_window_seconds + 3600),
            leading=lambda: self.leadership.leading,
            code_pools=self.code_pools,
            low_stock=self.low_stock,
            sweep_draws=self.draws.sweep_lapsed,
            release_ended=lambda: self.campaign_changes.release_ended(
                grace=timedelta(
                    seconds=settings.commit_fence_seconds + settings.sweep_interval_seconds
                ),
                within=timedelta(seconds=settings.payment_window_seconds + 3600),
            ),
        )
        # Once across all processes: the sweeper's cluster-wide part and the ledger jobs.
        self.leadership = Leadership(
            stores.database_url,
            interval_s=settings.sweep_interval_seconds,
            metrics=self.metrics,
            on_change=self._leadership_changed,
        )
        self.health = health.aio.HealthServicer()
        self.probe = DependencyProbe(
            redis_url=stores.redis_url,
            database_url=stores.database_url,
            health_servicer=self.health,
            services=SERVICE_NAMES,
            metrics=self.metrics,
        )
        self._drain_cut = asyncio.Event()
        self.server: grpc.aio.Server | None = None
        self.certificates: tls.Certificates | None = None
        self.port = 0
        self.metrics_port = 0
        self._metrics_http: Any = None

    async def start(self) -> int:
        """Starts everything; returns the bound port (useful with port 0)."""
        # First, before anything opens: a key or TLS file that cannot be used stops the
        # start here.
        settings = self.settings
        version, python, grpc_version = build_versions()
        summary = config_summary(
            settings, database_url=self.stores.database_url, redis_url=self.stores.redis_url
        )
        log.info(
            "surge %s starting (python %s, grpcio %s); settings: %s",
            version,
            python,
            grpc_version,
            json.dumps(summary, sort_keys=True, separators=(",", ":")),
            extra={"version": version, "settings": summary},
        )
        verifier = None
        if settings.auth == "JWT":
            verifier = Verifier(settings.jwt_keys())
        else:
            log.warning("SURGE_AUTH=NONE: every call is accepted without a credential")
        self.certificates = tls.load(settings)
        await self.pool.open(wait=True, timeout=30)
        for warning in await redis_memory.warnings(self.redis):
            log.warning("%s", warning)
        if isinstance(self.redis, RedisCluster):
            # The slot map before the first concurrent call: an uninitialised client sends
            # commands to random primaries (MOVED storms) while it learns it.
            await self.redis.initialize()
        await self.campaign_gate.load_scripts()
        await self.points_gate.load_scripts()
        await self.lottery_gate.load_scripts()
        self.committer.start()
        self.draws.committer.start()
        await self.event_stream.start()
        server = grpc.aio.server(
            interceptors=[
                EdgeInterceptor(
                    self.metrics,
                    access_log=settings.access_log,
                    verifier=verifier,
                    reflection_open=settings.reflection == "OPEN",
                    max_concurrent_calls=settings.max_concurrent_calls,
                    subject_rate=_buckets(
                        settings.subject_calls_per_second, settings.subject_burst
                    ),
                    member_rate=_buckets(settings.member_calls_per_second, settings.member_burst),
                )
            ],
            options=[
                # Explicit, not gRPC's defaults: a request past these is refused by gRPC
                # itself (RESOURCE_EXHAUSTED) before any of Surge's code reads it.
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_metadata_size", settings.max_metadata_bytes),
                ("grpc.absolute_max_metadata_size", settings.max_metadata_bytes),
            ],
        )
        generic_only = GenericHandlersOnly(server).as_server()
        registry.add_services(generic_only, self)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, generic_only)
        if settings.reflection != "OFF":
            reflection.enable(generic_only, (*SERVICE_NAMES, health.SERVICE_NAME))
        self.port = tls.add_port(server, settings, self.certificates)
        self.metrics.preinitialise_rpcs(rpc_methods(unary_only=True))
        await server.start()
        self._serve_metrics()
        # Leadership last, once nothing else can fail: a start that failed holding the lock
        # would keep every other process (or the next test's server) from leading.
        await self.leadership.start()
        self.sweeper.start()
        self.server = server
        # "" is liveness: SERVING while the process runs. The API services follow the
        # dependency probe (its first probe runs now, before this returns).
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.probe.start()
        log.info("serving on %s (port %d)", self.settings.grpc_address, self.port)
        return self.port

    async def _leadership_changed(self, leading: bool) -> None:
        if leading:
            self.ledger_jobs.start()
            self.event_stream.start_pruning()
        else:
            await self.ledger_jobs.stop()
            await self.event_stream.stop_pruning()

    def reload_certificates(self) -> None:
        """SIGHUP: the next TLS handshake reads the certificate files again."""
        if self.certificates is None:
            log.info("SIGHUP: serving plaintext, no TLS certificate to reload")
        else:
            self.certificates.request_reload()

    def cut_drain(self) -> None:
        """Ends the drain window now (a second SIGTERM / SIGINT): stop taking calls."""
        self._drain_cut.set()

    async def stop(self) -> None:
        """Graceful: NOT_SERVING, keep serving for the drain window, then refuse new calls,
        drain in-flight ones, flush the commit queue, close."""
        await self.health.enter_graceful_shutdown()  # every service, "" too; final
        drain_s = self.settings.drain_seconds
        if self.server is not None and drain_s > 0 and not self._drain_cut.is_set():
            log.info(
                "health NOT_SERVING; still serving calls for %gs (SURGE_DRAIN_SECONDS)", drain_s
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drain_cut.wait(), drain_s)
        if self.server is not None:
            # Event streams never end on their own: closed first, they answer UNAVAILABLE
            # and their consumers resume elsewhere instead of holding up the grace period.
            await self.event_stream.close()
            await self.server.stop(self.settings.shutdown_grace_seconds)
        await self.probe.stop()
        await self.committer.close()
        await self.draws.committer.close()
        await self.sweeper.stop()
        await self.leadership.stop()  # stops the ledger jobs if it led; frees the lock
        await self.event_stream.close()  # idempotent: closed above when serving
        await self.calls.aclose()
        await self.redis.aclose()
        await self.pool.close()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        log.info("stopped")

    def _serve_metrics(self) -> None:
        """/metrics on SURGE_METRICS_ADDRESS (port 0: off), apart from the gRPC address. With
        PROMETHEUS_MULTIPROC_DIR set, several server processes write to shared files and the
        one that bound the port serves them all; the others find it taken and skip."""
        if self.settings.metrics_port == 0:
            return
        # No `_created` series: they double every counter and histogram in the text format
        # and no rule or panel reads them. prometheus_client's switch is process-wide and
        # read at each scrape, so it is flipped here, where this process starts serving
        # /metrics, not when common.metrics is imported (importing a module should not
        # change what a test's own registry exposes). Idempotent.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        host = self.settings.metrics_host
        registry = self.metrics.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # The shared files hold Surge's counters, gauges and histograms only: the
            # process_* and python_* collectors of self.metrics.registry are not served.
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        try:
            server, _ = prometheus_client.start_http_server(
                self.settings.metrics_port, addr=host, registry=registry
            )
        except OSError as e:
            log.warning("metrics port %d not served here: %s", self.settings.metrics_port, e)
            return
        self._metrics_http = server
        self.metrics_port = server.server_port
        log.info("metrics on http://%s:%d/metrics", host, self.metrics_port)


def _buckets(rate_per_s: float, burst: int) -> TokenBuckets | None:
    return TokenBuckets(rate_per_s, burst) if rate_per_s > 0 else None


async def serve(settings: Settings, stores: Stores) -> None:
    app = App(settings, stores)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:  # the first starts the drain window, a second one ends it
        if stopping.is_set():
            app.cut_drain()
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    loop.add_signal_handler(signal.SIGHUP, app.reload_certificates)
    await app.start()
    await stopping.wait()
    log.info("signal received: draining")
    await app.stop()
