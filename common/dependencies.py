"""The drivers' errors that mean "a dependency cannot take this call now", in one table
(httpx's way: a lower layer's errors mapped to the most specific public meaning). The gRPC
edge answers them UNAVAILABLE (or ABORTED for a lost race) with the dependency and
condition in the ErrorInfo; the redemption metrics count them as `unavailable` / `retry`.
Anything a driver raises that is not here is a bug (INTERNAL).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import psycopg_pool
import redis.exceptions


@dataclass(frozen=True)
class DependencyFailure:
    dependency: str  # redis | postgresql
    condition: str  # what the ErrorInfo says happened
    lost_race: bool = False  # True: nothing was written, another transaction won: retry now


# Redis at maxmemory with noeviction (OOM), a replica after a failover (READONLY) and a
# Cluster between owners (MOVED / ASK, TRYAGAIN, CLUSTERDOWN) refuse writes the way a dead
# Redis does: retry later. The most specific class wins (walk the exception's MRO).
DRIVER_ERRORS: dict[type[BaseException], DependencyFailure] = {
    redis.exceptions.ConnectionError: DependencyFailure("redis", "unreachable"),
    redis.exceptions.TimeoutError: DependencyFailure("redis", "timeout"),
    redis.exceptions.OutOfMemoryError: DependencyFailure("redis", "out_of_memory"),
    redis.exceptions.ReadOnlyError: DependencyFailure("redis", "read_only"),
    redis.exceptions.AskError: DependencyFailure("redis", "slot_moved"),
    redis.exceptions.TryAgainError: DependencyFailure("redis", "slot_migrating"),
    redis.exceptions.ClusterError: DependencyFailure("redis", "cluster_down"),
    psycopg.OperationalError: DependencyFailure("postgresql", "unreachable"),
    psycopg_pool.PoolTimeout: DependencyFailure("postgresql", "pool_exhausted"),
    psycopg.errors.TransactionRollback: DependencyFailure(
        "postgresql", "transaction_conflict", lost_race=True
    ),
    psycopg.errors.DeadlockDetected: DependencyFailure("postgresql", "deadlock", lost_race=True),
    psycopg.errors.SerializationFailure: DependencyFailure(
        "postgresql", "serialization_failure", lost_race=True
    ),
}


def failure_of(exc: BaseException) -> DependencyFailure | None:
    for cls in type(exc).__mro__:
        found = DRIVER_ERRORS.get(cls)
        if found is not None:
            return found
    return None
