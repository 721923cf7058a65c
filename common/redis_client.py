"""Which Redis a URL names, one server or a Redis Cluster, and the redis-py client for it.

A cluster is named by the scheme: `redis+cluster://` (`rediss+cluster://` for TLS) with one
or more seed nodes, comma-separated:

    redis+cluster://[[user]:password@]host[:port][,host[:port]...][/0]

The seeds are where the client first asks for the slot map (CLUSTER SLOTS); it then talks
to every node that map names. More than one seed lets start-up survive a seed that is down.
The credentials and TLS apply to every node. A cluster has only database 0, so a path other
than `/0` (or none) is refused, and so are query options (redis-py's URL options are for one
server's pool, not for the cluster's nodes). Ports default to 6379; IPv6 hosts in brackets.

`redis://`, `rediss://` and `unix://` name one server, exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import redis
import redis.cluster
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode

from common import redis_cluster_fixes
from common.env import ConfigError

STANDALONE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_PORT = 6379


@dataclass(frozen=True)
class ClusterTarget:
    """A Redis Cluster: its seed nodes and what every node is reached with."""

    seeds: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log or repr


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def parse_cluster_url(url: str, name: str = "REDIS_URL") -> ClusterTarget:
    """Parses a `redis+cluster://` URL; ConfigError naming `name` when it is malformed. The
    message never repeats the URL: it may hold a password."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise ConfigError(
            f"{name}: a cluster URL starts with redis+cluster:// or rediss+cluster://"
        )
    netloc, slash, path = rest.partition("/")
    if "?" in netloc or "#" in netloc or "?" in path or "#" in path:
        raise ConfigError(f"{name}: a redis+cluster:// URL takes no query options")
    if slash and path not in ("", "0"):
        raise ConfigError(f"{name}: a Redis Cluster has only database 0 (the path must be /0)")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    seeds = tuple(_host_port(h, name) for h in hosts.split(","))
    return ClusterTarget(
        seeds=seeds, tls=scheme.lower() == "rediss+cluster", username=username, password=password
    )


def _host_port(raw: str, name: str) -> tuple[str, int]:
    raw = raw.strip()
    if not raw:
        raise ConfigError(f"{name}: every cluster seed needs a host (host:port,host:port)")
    if raw.startswith("["):  # [IPv6]:port
        end = raw.find("]")
        if end < 0:
            raise ConfigError(f"{name}: an IPv6 host needs its closing bracket")
        host, rest = raw[1:end], raw[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{name}: expected :port after an IPv6 host's bracket")
        port = rest[1:] if rest else ""
    else:
        host, _, port = raw.partition(":")
        if ":" in port:
            raise ConfigError(f"{name}: put an IPv6 host in brackets ([::1]:6379)")
    if not host:
        raise ConfigError(f"{name}: every cluster seed needs a host (host:port,host:port)")
    if not port:
        return host, DEFAULT_PORT
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{name} has a port that is not a number from 1 to 65535")
    return host, int(port)


def client(url: str, **options: Any) -> Redis | RedisCluster:
    """A redis.asyncio client for the URL: RedisCluster for `redis+cluster://`, else Redis.
    `options` (socket_timeout, max_connections, decode_responses...) go to either; on a
    cluster, max_connections is per node."""
    if not is_cluster_url(url):
        return Redis.from_url(url, **options)
    target = parse_cluster_url(url)
    redis_cluster_fixes.apply()
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.seeds],
        username=target.username,
        password=target.password,
        ssl=target.tls,
        **options,
    )


def service_client(url: str, *, max_connections: int) -> Redis | RedisCluster:
    """The App's shared client. One server: a blocking pool, so a burst beyond
    `max_connections` waits for a connection instead of failing. A cluster: redis-py's
    cluster client has no blocking pool, so `max_connections` is per node and a burst beyond
    it fails (UNAVAILABLE); redemptions do not use this client (they go through the
    auto-pipeline's own connections)."""
    if is_cluster_url(url):
        return client(url, max_connections=max_connections)
    # from_pool: closing the client closes the pool.
    return Redis.from_pool(
        BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=5)
    )


def sync_client(url: str, **options: Any) -> redis.Redis | redis.cluster.RedisCluster:
    """The blocking counterpart of `client` (start-up's probe, tests). A cluster client is
    built without requiring every slot covered, so a probe can say which node lacks them;
    it asks a seed for the slot map on construction (RedisClusterException if none answers)."""
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, **options)
    target = parse_cluster_url(url)
    return redis.cluster.RedisCluster(
        startup_nodes=[redis.cluster.ClusterNode(host, port) for host, port in target.seeds],  # type: ignore[no-untyped-call]
        username=target.username,
        password=target.password,
        ssl=target.tls,
        require_full_coverage=False,
        **options,
    )
