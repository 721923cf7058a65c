"""Settings come from an injected environment, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, Settings


def test_defaults_are_the_embedded_stack() -> None:
    settings = Settings.load({})
    assert settings.database_url is None and settings.redis_url is None
    assert settings.data_dir == Path(".data")
    assert settings.grpc_address == "127.0.0.1:50051"


def test_every_variable_is_read() -> None:
    settings = Settings.load(
        {
            "DATABASE_URL": "postgresql://db/x",
            "REDIS_URL": "redis://r:6379/0",
            "SURGE_GRPC_ADDRESS": "0.0.0.0:6000",
            "SURGE_PLAINTEXT": "1",
            "SURGE_HOLD_TTL_SECONDS": "20",
            "SURGE_COMMIT_FENCE_SECONDS": "4",
            "SURGE_SWEEP_INTERVAL_SECONDS": "0.5",
            "SURGE_PAYMENT_WINDOW_SECONDS": "600",
            "SURGE_COMMIT_BATCH_MAX": "64",
            "SURGE_COMMIT_WORKERS": "3",
            "SURGE_COMMIT_LINGER_MS": "12",
            "SURGE_PG_POOL_MIN": "1",
            "SURGE_PG_POOL_MAX": "4",
            "SURGE_LOG_LEVEL": "debug",
            "SURGE_METRICS_PORT": "0",
            "SURGE_LOG_FORMAT": "text",
            "SURGE_ACCESS_LOG": "off",
            "SURGE_UVLOOP": "off",
            "SURGE_REDIS_MAX_CONNECTIONS": "50",
        }
    )
    assert settings.database_url == "postgresql://db/x"
    assert settings.redis_url == "redis://r:6379/0"
    assert (settings.hold_ttl_seconds, settings.commit_fence_seconds) == (20.0, 4.0)
    assert (settings.commit_batch_max, settings.commit_workers) == (64, 3)
    assert settings.commit_linger_ms == 12
    assert settings.log_level == "DEBUG"
    assert (settings.metrics_port, settings.log_json, settings.access_log) == (0, False, False)
    assert settings.redis_max_connections == 50
    assert settings.plaintext
    assert not settings.uvloop
    assert Settings.load({}).uvloop  # on unless turned off


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SURGE_COMMIT_BATCH_MAX": "many"}, "must be an integer"),
        ({"SURGE_COMMIT_WORKERS": "0"}, "between 1 and 64"),
        ({"SURGE_HOLD_TTL_SECONDS": "-1"}, "must be positive"),
        ({"SURGE_HOLD_TTL_SECONDS": "2", "SURGE_COMMIT_FENCE_SECONDS": "3"}, "must be below"),
        ({"SURGE_PG_POOL_MIN": "9", "SURGE_PG_POOL_MAX": "2"}, "must not exceed"),
        ({"SURGE_COMMIT_LINGER_MS": "-1"}, "between 0 and 1000"),
        (
            {
                "SURGE_HOLD_TTL_SECONDS": "3",
                "SURGE_COMMIT_FENCE_SECONDS": "2.5",
                "SURGE_COMMIT_LINGER_MS": "300",
            },
            "SURGE_COMMIT_LINGER_MS must be at most half",
        ),
        ({"SURGE_LOG_FORMAT": "xml"}, "must be one of JSON, TEXT"),
        ({"SURGE_LOG_LEVEL": "loud"}, "must be one of DEBUG"),
        ({"SURGE_UVLOOP": "maybe"}, "SURGE_UVLOOP must be one of ON, OFF"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env)


def test_metrics_listen_on_loopback_apart_from_the_grpc_address() -> None:
    """Opening gRPC to the network must not open /metrics too."""
    default = Settings.load({"SURGE_GRPC_ADDRESS": "0.0.0.0:6000", "SURGE_PLAINTEXT": "1"})
    assert (default.metrics_host, default.metrics_port) == ("127.0.0.1", 9464)
    chosen = Settings.load({"SURGE_METRICS_ADDRESS": "[::]:9100"})
    assert (chosen.metrics_host, chosen.metrics_port) == ("::", 9100)
    port_only = Settings.load({"SURGE_METRICS_PORT": "9200"})
    assert (port_only.metrics_host, port_only.metrics_port) == ("127.0.0.1", 9200)
    for bad in ("9464", "host:", "host:port", ":9464", "h:70000"):
        with pytest.raises(ConfigError, match="SURGE_METRICS_ADDRESS"):
            Settings.load({"SURGE_METRICS_ADDRESS": bad})


def test_drain_window_and_startup_timeout() -> None:
    defaults = Settings.load({})
    assert (defaults.drain_seconds, defaults.startup_timeout_seconds) == (5.0, 30.0)
    chosen = Settings.load({"SURGE_DRAIN_SECONDS": "0", "SURGE_STARTUP_TIMEOUT_SECONDS": "2.5"})
    assert (chosen.drain_seconds, chosen.startup_timeout_seconds) == (0.0, 2.5)


@pytest.mark.parametrize(
    "url", ["postgresql://u@h:5432/db", "postgres://h/db", "postgresql:///db?host=/run/pg"]
)
def test_postgresql_urls_are_accepted(url: str) -> None:
    assert Settings.load({"DATABASE_URL": url}).database_url == url


def test_a_cluster_url_is_accepted() -> None:
    url = "redis+cluster://h1:7000,h2:7001"
    assert Settings.load({"REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://h1:7000,h2:x", "REDIS_URL has a port that is not a number"),
        ("redis+cluster://h1/2", "REDIS_URL: a Redis Cluster has only database 0"),
        ("cluster://h1:7000", "REDIS_URL must start with redis://.*redis\\+cluster://"),
        ("redis://h1:x/0", "REDIS_URL has a port that is not a number"),
    ],
)
def test_a_malformed_redis_url_is_refused_naming_it(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load({"REDIS_URL": url})


@pytest.mark.parametrize("url", ["redis://r:6379/0", "rediss://:pw@r:6380/1", "unix:///run/r.sock"])
def test_standalone_redis_urls_are_accepted_as_before(url: str) -> None:
    assert Settings.load({"REDIS_URL": url}).redis_url == url
