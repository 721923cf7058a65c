"""Fixtures: a real Redis and PostgreSQL for the session (started from their binaries in a
temporary folder on free ports, or taken from TEST_REDIS_URL / TEST_DATABASE_URL), a clean
slate per test, and a real server on 127.0.0.1:0 reached through a real gRPC channel."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from server.app import App, Stores
from server.config import Settings
from server.embedded import LocalStack
from server.migrate import migrate
from tests import auth
from tests.auth import TEST_SECRET, TEST_SUBJECT
from tests.factories import Api
from tests.local_cluster import LocalCluster, local_cluster
from tests.redis_helpers import flush_all

__all__ = ["TEST_SETTINGS", "TEST_SUBJECT", "Running", "StartServer"]

# Short timings so hold expiry, sweeps and payment windows happen within a test.
TEST_SETTINGS = Settings(
    grpc_address="127.0.0.1:0",
    hold_ttl_seconds=3.0,
    commit_fence_seconds=1.0,
    sweep_interval_seconds=0.2,
    payment_window_seconds=60.0,
    shutdown_grace_seconds=5.0,
    drain_seconds=0.0,  # tests of the drain window set their own
    pg_pool_min=2,
    pg_pool_max=10,
    metrics_port=0,  # tests that scrape /metrics turn it on with a free port
    jwt_secret=TEST_SECRET,
    # Races on one member are what many tests are about; tests/server/test_overload.py
    # turns the per-member rate on.
    member_calls_per_second=0.0,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# `make test-cluster` sets this: the same tests, with the service's Redis a real Redis
# Cluster (3 primaries + 3 replicas) instead of one server.
CLUSTER_PROFILE = os.environ.get("SURGE_TEST_REDIS", "") == "cluster"


@pytest.fixture(scope="session")
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    database_url = os.environ.get("TEST_DATABASE_URL")
    redis_url = os.environ.get("TEST_REDIS_URL")
    if database_url and redis_url:
        migrate(database_url)
        yield Stores(database_url, redis_url)
        return
    folder = Path(tempfile.mkdtemp(prefix="surge-test-"))
    folder.chmod(0o755)  # the postgres user must reach its data directory inside
    stack = LocalStack(folder, _free_port(), _free_port())
    stack.start()
    try:
        migrate(stack.database_url)
        if CLUSTER_PROFILE:
            cluster: LocalCluster = request.getfixturevalue("redis_cluster")
            yield Stores(stack.database_url, cluster.service_url)
        else:
            yield Stores(stack.database_url, stack.redis_url)
    finally:
        stack.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A real Redis Cluster (3 primaries, 3 replicas) on loopback, started on first use
    (only tests that ask for it pay for it) and stopped at the end of the session."""
    with local_cluster() as cluster:
        yield cluster


@pytest.fixture
def clean(stores: Stores) -> Stores:
    """Every test starts from empty stores."""
    with psycopg.connect(stores.database_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE ledger_entries, redemptions, campaign_members, campaigns, "
            "stock_adjustments, members, items, item_codes, ledger_jobs, audit_events, "
            "events, redemption_history, products, stock_levels, stock_movements, campaign_stock, "
            "stock_transfers, stock_counts, stock_count_lines, lotteries, create_requests, "
            "card_types, earn_rules CASCADE"
        )
        conn.execute("DELETE FROM locations WHERE code <> 'default'")
        conn.execute("UPDATE events_pruned SET through = 0")
    flush_all(stores.redis_url)  # every primary on a cluster
    return stores


@dataclass
class Running:
    app: App
    api: Api
    channel: grpc.aio.Channel


StartServer = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_server(clean: Stores) -> AsyncIterator[StartServer]:
    """Starts a server (with settings overrides); all are stopped at the end of the test."""
    running: list[Running] = []

    async def start(**overrides: Any) -> Running:
        app = App(replace(TEST_SETTINGS, **overrides), clean)
        port = await app.start()
        channel = auth.channel(f"127.0.0.1:{port}")
        r = Running(app, Api(channel), channel)
        running.append(r)
        return r

    yield start
    for r in running:
        await r.channel.close()
        if r.app.server is not None:
            await r.app.stop()


@pytest.fixture
async def server(start_server: StartServer) -> Running:
    return await start_server()


@pytest.fixture
def api(server: Running) -> Api:
    return server.api
