"""REDIS_URL names one server or a Redis Cluster (common/redis_client.py)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis, RedisCluster

from common.env import ConfigError
from common.redis_client import ClusterTarget, client, is_cluster_url, parse_cluster_url


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis+cluster://h1:7000", ClusterTarget(seeds=(("h1", 7000),))),
        ("redis+cluster://h1", ClusterTarget(seeds=(("h1", 6379),))),
        (
            "redis+cluster://h1:7000,h2:7001, h3 /0",
            ClusterTarget(seeds=(("h1", 7000), ("h2", 7001), ("h3", 6379))),
        ),
        (
            "rediss+cluster://app:p%40ss@h1:7000,[::1]:7001/",
            ClusterTarget(
                seeds=(("h1", 7000), ("::1", 7001)), tls=True, username="app", password="p@ss"
            ),
        ),
        (
            "REDIS+CLUSTER://:secret@[fe80::1]",
            ClusterTarget(seeds=(("fe80::1", 6379),), password="secret"),
        ),
    ],
)
def test_cluster_urls_are_parsed(url: str, target: ClusterTarget) -> None:
    assert is_cluster_url(url)
    assert parse_cluster_url(url) == target


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://", "needs a host"),
        ("redis+cluster://h1:7000,", "needs a host"),
        ("redis+cluster://h1:7000,,h2", "needs a host"),
        ("redis+cluster://:pw@", "needs a host"),
        ("redis+cluster://h1:port", "port that is not a number"),
        ("redis+cluster://h1:0", "port that is not a number"),
        ("redis+cluster://h1:70000", "port that is not a number"),
        ("redis+cluster://h1:7000/1", "only database 0"),
        ("redis+cluster://h1:7000?timeout=1", "no query options"),
        ("redis+cluster://::1:7000", "IPv6 host in brackets"),
        ("redis+cluster://[::1:7000", "closing bracket"),
        ("redis+cluster://[::1]7000", "expected :port"),
    ],
)
def test_malformed_cluster_urls_are_refused_naming_redis_url(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_cluster_url(url)
    assert str(caught.value).startswith("REDIS_URL")


def test_the_message_never_repeats_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_cluster_url("redis+cluster://u:hunter2@h1:bad")
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(parse_cluster_url("redis+cluster://u:hunter2@h1"))


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://h", "unix:///run/redis.sock"])
def test_standalone_urls_are_not_clusters(url: str) -> None:
    assert not is_cluster_url(url)


async def test_the_factory_makes_the_client_the_url_names() -> None:
    one = client("redis://127.0.0.1:6379/0", socket_timeout=2)
    assert type(one) is Redis
    await one.aclose()
    # Built without connecting: RedisCluster asks its seeds for the slot map on first use.
    many = client("rediss+cluster://u:pw@127.0.0.1:7000,127.0.0.1:7001", max_connections=8)
    assert isinstance(many, RedisCluster)
    assert [(n.host, n.port) for n in many.nodes_manager.startup_nodes.values()] == [
        ("127.0.0.1", 7000),
        ("127.0.0.1", 7001),
    ]
    await many.aclose()
