"""Prometheus metrics, as one injected service built against a registry passed in, so each
test (and each App) gets a fresh one. Names, types and labels are the contract in
docs/metrics-contract.md: the dashboard and alert rules in ops/ are built on them.

Conventions: base units (seconds), `_total` counters, no member or item ids in labels; the
only campaign label is `campaign`, a readable one (`campaign_label`: the name's first 32
characters and the id's first 8), kept to active campaigns by `set_campaigns`.

Besides Surge's own series the registry carries the standard process_* (CPU, memory, file
descriptors, start time; Linux only, read from /proc), python_info and python_gc_* series,
and `surge_build_info`. With PROMETHEUS_MULTIPROC_DIR set, /metrics serves the shared files
instead of this registry (server/app.py): the process and Python collectors are not in them,
so a multiprocess server exports no process_* or python_* series at all (prometheus_client
cannot aggregate them across processes); surge_build_info is a gauge and is there.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

# go-grpc-prometheus's grpc_code values (codes.Code.String()), keyed by the numeric code.
GRPC_CODES = (
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
)
REDEMPTION_OUTCOMES = (
    "committed",
    "pending_payment",
    "replayed",
    "sold_out",
    "insufficient_points",
    "limit_exceeded",
    "campaign_not_active",
    "member_frozen",
    "below_threshold",
    "key_reused",
    "invalid",
    "not_found",
    "retry",
    "unavailable",
    "error",
)
# Latency buckets for a service whose floor is a few ms and whose SLO is 250 ms.
_RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


# The `campaign` label: at most CAMPAIGN_NAME_CHARS of the name, a space, then the id's first
# CAMPAIGN_ID_CHARS hex digits, so two campaigns with one name still differ.
CAMPAIGN_NAME_CHARS = 32
CAMPAIGN_ID_CHARS = 8


def campaign_label(campaign_id: str, name: str) -> str:
    """'Summer sale 3f2a9c1e' for a campaign named "Summer sale": whitespace runs (newlines
    included) become one space, the name is cut to CAMPAIGN_NAME_CHARS characters and the
    id to its first CAMPAIGN_ID_CHARS characters (enough to find it: `id::text LIKE
    '3f2a9c1e%'`). Bounded whatever an operator types as a name."""
    short = " ".join(name.split())[:CAMPAIGN_NAME_CHARS].rstrip()
    prefix = campaign_id[:CAMPAIGN_ID_CHARS]
    return f"{short} {prefix}" if short else prefix


def build_versions() -> tuple[str, str, str]:
    """(Surge's version, Python's, grpcio's), for surge_build_info."""
    import grpc  # here, not at the top: the domain modules that import metrics stay grpc-free

    try:
        surge = metadata.version("surge")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        surge = "unknown"
    return surge, platform.python_version(), grpc.__version__


_CAMPAIGN_STATES = ("allotted", "remaining", "held", "committed")


@dataclass(frozen=True)
class CampaignUnits:
    campaign_id: str
    name: str
    allotted: int
    committed: int
    held: int

    @property
    def remaining(self) -> int:
        return self.allotted - self.committed - self.held


class Metrics:
    def __init__(self, registry: CollectorRegistry, *, process_collectors: bool = True) -> None:
        """process_collectors: also register process_*, python_info and python_gc_* on the
        registry (they read this process at each scrape)."""
        self.registry = registry
        if process_collectors:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        version, python, grpc_version = build_versions()
        self.build_info = Gauge(
            "surge_build_info",
            "Always 1: the running Surge's version, and its Python's and grpcio's.",
            ("version", "python", "grpc"),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.build_info.labels(version, python, grpc_version).set(1)
        rpc = ("grpc_type", "grpc_service", "grpc_method")
        self.rpc_started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", rpc, registry=registry
        )
        self.rpc_handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            (*rpc, "grpc_code"),
            registry=registry,
        )
        self.rpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time to handle an RPC, until the status is sent.",
            rpc,
            buckets=_RPC_BUCKETS,
            registry=registry,
        )
        self.msg_received = Counter(
            "grpc_server_msg_received_total", "Messages received.", rpc, registry=registry
        )
        self.msg_sent = Counter(
            "grpc_server_msg_sent_total", "Messages sent.", rpc, registry=registry
        )
        self.redemptions = Counter(
            "surge_redemptions_total", "Redeem calls by outcome.", ("outcome",), registry=registry
        )
        self.campaign_units = Gauge(
            "surge_campaign_units",
            "Units of each active campaign, by state.",
            ("campaign", "state"),
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.holds_active = Gauge(
            "surge_holds_active",
            "In-flight holds across active campaigns.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.sweeper_holds = Counter(
            "surge_sweeper_holds_total",
            "Holds past their deadline settled by the sweeper.",
            ("action",),
            registry=registry,
        )
        self.payments_expired = Counter(
            "surge_payments_expired_total",
            "Points + cash redemptions expired unpaid.",
            registry=registry,
        )
        self.sweeper_lag = Gauge(
            "surge_sweeper_lag_seconds",
            "At the last sweep, how far past its deadline the oldest lapsed hold was.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.sweeper_last_run = Gauge(
            "surge_sweeper_last_run_timestamp_seconds",
            "Unix time of the last completed sweep.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.leader = Gauge(
            "surge_leader",
            "1 in the process that runs the cluster-wide background jobs (holds the "
            "leadership lock), 0 in the others.",
            registry=registry,
            # One series per process (a `pid` label) in multiprocess mode: which one leads.
            multiprocess_mode="liveall",
        )
        self.events_watchers = Gauge(
            "surge_events_watchers",
            "Event streams open in this process (WatchEvents calls).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.commit_batch_size = Histogram(
            "surge_commit_batch_size",
            "Redemptions per group commit.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "surge_commit_duration_seconds",
            "PostgreSQL time of one group commit.",
            buckets=_FAST_BUCKETS,
            registry=registry,
        )
        self.redis_seconds = Histogram(
            "surge_redis_script_duration_seconds",
            "Redis Lua call latency.",
            ("script",),
            buckets=_FAST_BUCKETS,
            registry=registry,
        )
        self.redis_pipeline_commands = Histogram(
            "surge_redis_pipeline_commands",
            "Script calls sent together in one auto-pipelined round trip (reserve, hold).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )
        self.pg_pool = Gauge(
            "surge_pg_pool_connections",
            "PostgreSQL pool connections.",
            ("state",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pg_waiting = Gauge(
            "surge_pg_pool_waiting",
            "Requests waiting for a PostgreSQL connection.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.cache_loads = Counter(
            "surge_cache_loads_total",
            "Redis state loaded from PostgreSQL.",
            ("kind",),
            registry=registry,
        )
        self.mirrors_deferred = Counter(
            "surge_mirrors_deferred_total",
            "Redis mirrors not applied after a PostgreSQL commit (Redis refused or was away); "
            "the sweeper reloads them.",
            ("kind",),
            registry=registry,
        )
        self.redis_memory = Gauge(
            "surge_redis_memory_bytes",
            "Redis memory per node (every primary of a cluster): used, and max "
            "(maxmemory; 0 = no limit).",
            ("kind", "node"),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.redis_evicts = Gauge(
            "surge_redis_may_evict",
            "1 when Redis's maxmemory-policy may evict gate keys (anything but noeviction), "
            "on any primary.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.dependency_up = Gauge(
            "surge_dependency_up",
            "1 when the last probe of the dependency succeeded.",
            ("dependency",),
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.auth_refused = Counter(
            "surge_auth_refused_total",
            "Calls refused at the edge for their credential: CREDENTIAL_MISSING, "
            "CREDENTIAL_INVALID (UNAUTHENTICATED) or SCOPE_MISSING (PERMISSION_DENIED).",
            ("reason",),
            registry=registry,
        )
        # Label: the item id, only for pool items with a campaign not yet ended (the sweeper
        # refreshes it each pass), so the series are bounded by the pool items on sale.
        self.code_pool_available = Gauge(
            "surge_code_pool_available",
            "Codes left in the pool of each code-pool item on sale (not yet given out).",
            ("item_id",),
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self._code_pools: set[str] = set()
        # The low-stock signal (inventory/low_stock.py), refreshed by the sweeper like the
        # code pools: item_id only for items with a threshold (at most 500 series).
        self.stock_low_items = Gauge(
            "surge_stock_low_items",
            "Items whose available units are below their low-stock threshold.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.stock_available = Gauge(
            "surge_stock_available",
            "Available units (on hand minus allotted) of each item with a low-stock threshold.",
            ("item_id",),
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.stock_low_threshold = Gauge(
            "surge_stock_low_threshold",
            "The low-stock threshold of each item that has one.",
            ("item_id",),
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self._stock_watched: set[str] = set()
        self._campaigns: dict[str, tuple[int, int, int, int]] = {}  # label -> values last set
        self._outcome_children: dict[str, Any] = {}
        self._redis_children: dict[str, Any] = {}
        for outcome in REDEMPTION_OUTCOMES:
            self.redemptions.labels(outcome)
        for action in ("released", "committed"):
            self.sweeper_holds.labels(action)
        for reason in ("CREDENTIAL_MISSING", "CREDENTIAL_INVALID", "SCOPE_MISSING"):
            self.auth_refused.labels(reason)
        for kind in ("campaign", "member"):
            self.cache_loads.labels(kind)
            self.mirrors_deferred.labels(kind)

    def preinitialise_rpcs(self, methods: Sequence[tuple[str, str]]) -> None:
        """Every (service, method) starts at zero for every code, as go-grpc-prometheus does,
        so rates and ratios exist before the first call."""
        for service, method in methods:
            labels = ("unary", service, method)
            self.rpc_started.labels(*labels)
            self.msg_received.labels(*labels)
            self.msg_sent.labels(*labels)
            self.rpc_seconds.labels(*labels)
            for code in GRPC_CODES:
                self.rpc_handled.labels(*labels, code)

    def redis_call(self, script: str) -> _Timer:
        """Times a Redis call into surge_redis_script_duration_seconds{script}: `with`."""
        child = self._redis_children.get(script)
        if child is None:
            child = self._redis_children[script] = self.redis_seconds.labels(script)
        return _Timer(child)

    def count_redemption(self, outcome: str) -> None:
        child = self._outcome_children.get(outcome)
        if child is None:
            child = self._outcome_children[outcome] = self.redemptions.labels(outcome)
        child.inc()

    def set_campaigns(self, campaigns: Sequence[CampaignUnits]) -> None:
        """Replaces the per-campaign gauges: campaigns no longer active lose their series
        (a renamed campaign too: its old label goes, the new one comes)."""
        labelled = [(campaign_label(c.campaign_id, c.name), c) for c in campaigns]
        current = {label for label, _ in labelled}
        for gone in self._campaigns.keys() - current:
            for state in _CAMPAIGN_STATES:
                self.campaign_units.remove(gone, state)
        shown = {}
        for label, c in labelled:
            values = (c.allotted, c.remaining, c.held, c.committed)
            shown[label] = values
            # Set only what changed: with 10^4 campaigns open, setting all 4x10^4 series
            # took 112 ms of the event loop every second (make bench-scale), most unchanged.
            if self._campaigns.get(label) != values:
                for state, value in zip(_CAMPAIGN_STATES, values, strict=True):
                    self.campaign_units.labels(label, state).set(value)
        self._campaigns = shown

    def set_code_pools(self, available: dict[str, int]) -> None:
        """Replaces the per-pool gauges: items no longer on sale lose their series."""
        for gone in self._code_pools - available.keys():
            self.code_pool_available.remove(gone)
        for item_id, n in available.items():
            self.code_pool_available.labels(item_id).set(n)
        self._code_pools = set(available)

    def set_low_stock(
        self, low_items: int, available: dict[str, int], thresholds: dict[str, int]
    ) -> None:
        """Replaces the low-stock gauges: items whose threshold was cleared lose their series."""
        self.stock_low_items.set(low_items)
        for gone in self._stock_watched - available.keys():
            self.stock_available.remove(gone)
            self.stock_low_threshold.remove(gone)
        for item_id, n in available.items():
            self.stock_available.labels(item_id).set(n)
            self.stock_low_threshold.labels(item_id).set(thresholds[item_id])
        self._stock_watched = set(available)


class _Timer:
    """A context manager that observes its duration: a class, not @contextmanager, because
    it runs several times per redemption (a generator-based one cost ~5 µs each time)."""

    __slots__ = ("_child", "_started")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._child.observe(time.perf_counter() - self._started)
