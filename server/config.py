"""The one place that reads the environment. Loaded once at start-up, passed in from there."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from common.env import (
    ConfigError,
    env_choice,
    env_int,
    env_positive_float,
    env_rate,
    env_seconds,
)
from common.redis_client import (
    CLUSTER_SCHEMES,
    STANDALONE_SCHEMES,
    is_cluster_url,
    parse_cluster_url,
)
from points.program import Program
from server.credentials import Keys

__all__ = ["ConfigError", "Settings", "is_loopback"]

_YES_NO = ("0", "1", "FALSE", "TRUE")


@dataclass(frozen=True, kw_only=True)
class Settings:
    # Stores. None means the embedded default: a local Redis / PostgreSQL under data_dir.
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".data")
    embedded_redis_port: int = 16379
    embedded_postgres_port: int = 15432

    # gRPC server.
    grpc_address: str = "127.0.0.1:50051"
    shutdown_grace_seconds: float = 10.0
    # SIGTERM: health says NOT_SERVING this long while calls are still served, so load
    # balancers take the process out before it stops taking calls (then the grace above).
    drain_seconds: float = 5.0
    # How long start-up waits for Redis and PostgreSQL to answer (retrying with backoff)
    # before giving up with exit code 1.
    startup_timeout_seconds: float = 30.0
    # Transport security (server/tls.py): the server's certificate chain and key, and the CA
    # that must have signed clients' certificates when set (mTLS). Without them gRPC is
    # plaintext: on loopback as the embedded default, elsewhere only when chosen (plaintext).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    plaintext: bool = False

    # Redemption.
    hold_ttl_seconds: float = 15.0
    commit_fence_seconds: float = 5.0
    sweep_interval_seconds: float = 1.0
    payment_window_seconds: float = 900.0
    # How long after delivery a member may ask for a return (FulfilmentService.RequestReturn).
    return_window_seconds: float = 7 * 24 * 3600.0
    idempotency_ttl_seconds: int = 7 * 24 * 3600
    # Refusals are the surge's flood (tens of thousands per sale): they are remembered only
    # as long as a client keeps retrying, not as long as redemptions.
    refusal_ttl_seconds: int = 900
    # A campaign's Redis keys expire this long after its sale ends (they reload if needed).
    campaign_key_retention_seconds: int = 3600
    # A member's Redis keys expire after this long unused (they reload when next needed).
    member_key_idle_seconds: int = 86_400
    # The event stream (docs/events.md): events older than this are pruned by the leader.
    events_retention_seconds: int = 7 * 86_400
    commit_batch_max: int = 256
    commit_workers: int = 1
    commit_linger_ms: int = 5
    pg_pool_min: int = 2
    pg_pool_max: int = 10
    redis_max_connections: int = 256
    # Calls in flight at once before new ones are refused RESOURCE_EXHAUSTED (0: no limit):
    # past a few hundred, more concurrency only lengthens every call's wait.
    max_concurrent_calls: int = 512
    # Redemptions waiting for (or in) a group commit before new ones are refused
    # RESOURCE_EXHAUSTED / COMMIT_QUEUE_FULL, before they hold anything.
    commit_queue_max: int = 2048
    # Token buckets in this process (common/ratelimit.py); 0 calls/s: no limit.
    member_calls_per_second: float = 10.0
    member_burst: int = 20
    subject_calls_per_second: float = 0.0
    subject_burst: int = 1000
    # What a call may carry: Surge's requests are a few hundred bytes, a bearer token a
    # few kilobytes; anything far past that is a mistake or an attack.
    max_message_bytes: int = 256 * 1024
    max_metadata_bytes: int = 16 * 1024

    # Observability.
    # /metrics on its own address, loopback by default: opening gRPC to the network must
    # not open the metrics too.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    log_level: str = "INFO"
    log_json: bool = True
    access_log: bool = True
    # The event loop `serve` runs on: uvloop's (libuv) or asyncio's own.
    uvloop: bool = True

    # Credentials (server/credentials.py, server/scopes.py). "NONE" turns them off: only
    # when chosen explicitly, and logged loudly at start.
    auth: str = "JWT"
    jwt_secret: bytes | None = field(default=None, repr=False)  # never in a log or repr
    jwt_jwks_file: Path | None = None
    jwt_audience: str = "surge"
    jwt_issuer: str = "surge"
    jwt_leeway_seconds: float = 30.0
    # Server reflection: OPEN to anyone, AUTHENTICATED (any valid credential), or OFF.
    reflection: str = "AUTHENTICATED"

    # The loyalty program's rules (points/program.py documents its variables).
    program: Program = field(default_factory=Program)

    def __post_init__(self) -> None:
        if self.commit_fence_seconds >= self.hold_ttl_seconds:
            raise ConfigError("SURGE_COMMIT_FENCE_SECONDS must be below SURGE_HOLD_TTL_SECONDS")
        # A commit must end before its hold's deadline less the fence; lingering for half of
        # what is left keeps it clear of that even when PostgreSQL is slow.
        if self.commit_linger_ms / 1000 > (self.hold_ttl_seconds - self.commit_fence_seconds) / 2:
            raise ConfigError(
                "SURGE_COMMIT_LINGER_MS must be at most half of "
                "SURGE_HOLD_TTL_SECONDS - SURGE_COMMIT_FENCE_SECONDS"
            )
        if self.pg_pool_min > self.pg_pool_max:
            raise ConfigError("SURGE_PG_POOL_MIN must not exceed SURGE_PG_POOL_MAX")
        self._check_transport()

    def _check_transport(self) -> None:
        """TLS needs both files; plaintext off loopback must be chosen, never fallen into."""
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("SURGE_TLS_CERT_FILE and SURGE_TLS_KEY_FILE must be set together")
        if self.tls_cert_file is None:
            if self.tls_client_ca_file is not None:
                raise ConfigError(
                    "SURGE_TLS_CLIENT_CA_FILE needs SURGE_TLS_CERT_FILE and SURGE_TLS_KEY_FILE"
                )
            if not self.plaintext and not is_loopback(self.grpc_address):
                raise ConfigError(
                    f"SURGE_GRPC_ADDRESS {self.grpc_address} is not a loopback address: set "
                    "SURGE_TLS_CERT_FILE and SURGE_TLS_KEY_FILE for TLS, or SURGE_PLAINTEXT=1 "
                    "to serve plaintext"
                )
        elif self.plaintext:
            raise ConfigError(
                "SURGE_PLAINTEXT and SURGE_TLS_CERT_FILE/SURGE_TLS_KEY_FILE are set: choose one"
            )

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        program = Program.load(env)
        metrics_host, metrics_port = _metrics_address(env)
        return cls(
            database_url=_store_url(env, "DATABASE_URL", ("postgresql", "postgres")),
            redis_url=_redis_url(env),
            data_dir=Path(env.get("SURGE_DATA_DIR", ".data")),
            embedded_redis_port=env_int(env, "SURGE_EMBEDDED_REDIS_PORT", 16379, 1, 65535),
            embedded_postgres_port=env_int(env, "SURGE_EMBEDDED_POSTGRES_PORT", 15432, 1, 65535),
            grpc_address=env.get("SURGE_GRPC_ADDRESS", "127.0.0.1:50051"),
            shutdown_grace_seconds=env_positive_float(env, "SURGE_SHUTDOWN_GRACE_SECONDS", 10.0),
            drain_seconds=env_seconds(env, "SURGE_DRAIN_SECONDS", 5.0, 3600.0),
            startup_timeout_seconds=env_seconds(
                env, "SURGE_STARTUP_TIMEOUT_SECONDS", 30.0, 86_400.0
            ),
            tls_cert_file=_path(env, "SURGE_TLS_CERT_FILE"),
            tls_key_file=_path(env, "SURGE_TLS_KEY_FILE"),
            tls_client_ca_file=_path(env, "SURGE_TLS_CLIENT_CA_FILE"),
            plaintext=env_choice(env, "SURGE_PLAINTEXT", "0", _YES_NO) in ("1", "TRUE"),
            hold_ttl_seconds=env_positive_float(env, "SURGE_HOLD_TTL_SECONDS", 15.0),
            commit_fence_seconds=env_positive_float(env, "SURGE_COMMIT_FENCE_SECONDS", 5.0),
            sweep_interval_seconds=env_positive_float(env, "SURGE_SWEEP_INTERVAL_SECONDS", 1.0),
            payment_window_seconds=env_positive_float(env, "SURGE_PAYMENT_WINDOW_SECONDS", 900.0),
            return_window_seconds=env_positive_float(
                env, "SURGE_RETURN_WINDOW_SECONDS", 7 * 24 * 3600.0
            ),
            idempotency_ttl_seconds=env_int(
                env, "SURGE_IDEMPOTENCY_TTL_SECONDS", 7 * 24 * 3600, 60, 10**8
            ),
            refusal_ttl_seconds=env_int(env, "SURGE_REFUSAL_TTL_SECONDS", 900, 60, 86_400),
            member_key_idle_seconds=env_int(
                env, "SURGE_MEMBER_KEY_IDLE_SECONDS", 86_400, 3600, 10**8
            ),
            campaign_key_retention_seconds=env_int(
                env, "SURGE_CAMPAIGN_KEY_RETENTION_SECONDS", 3600, 60, 10**8
            ),
            events_retention_seconds=_duration(env, "SURGE_EVENTS_RETENTION", 7 * 86_400),
            commit_batch_max=env_int(env, "SURGE_COMMIT_BATCH_MAX", 256, 1, 10_000),
            commit_workers=env_int(env, "SURGE_COMMIT_WORKERS", 1, 1, 64),
            commit_linger_ms=env_int(env, "SURGE_COMMIT_LINGER_MS", 5, 0, 1000),
            pg_pool_min=env_int(env, "SURGE_PG_POOL_MIN", 2, 1, 1000),
            pg_pool_max=env_int(env, "SURGE_PG_POOL_MAX", 10, 1, 1000),
            redis_max_connections=env_int(env, "SURGE_REDIS_MAX_CONNECTIONS", 256, 1, 100_000),
            max_concurrent_calls=env_int(env, "SURGE_MAX_CONCURRENT_CALLS", 512, 0, 1_000_000),
            commit_queue_max=env_int(env, "SURGE_COMMIT_QUEUE_MAX", 2048, 1, 1_000_000),
            member_calls_per_second=env_rate(env, "SURGE_MEMBER_CALLS_PER_SECOND", 10.0),
            member_burst=env_int(env, "SURGE_MEMBER_BURST", 20, 1, 1_000_000),
            subject_calls_per_second=env_rate(env, "SURGE_SUBJECT_CALLS_PER_SECOND", 0.0),
            subject_burst=env_int(env, "SURGE_SUBJECT_BURST", 1000, 1, 10_000_000),
            max_message_bytes=env_int(
                env, "SURGE_MAX_MESSAGE_BYTES", 256 * 1024, 1024, 64 * 1024 * 1024
            ),
            max_metadata_bytes=env_int(
                env, "SURGE_MAX_METADATA_BYTES", 16 * 1024, 1024, 1024 * 1024
            ),
            metrics_host=metrics_host,
            metrics_port=env_int(env, "SURGE_METRICS_PORT", metrics_port, 0, 65535),
            log_level=env_choice(
                env, "SURGE_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")
            ),
            log_json=env_choice(env, "SURGE_LOG_FORMAT", "JSON", ("JSON", "TEXT")) == "JSON",
            access_log=env_choice(env, "SURGE_ACCESS_LOG", "ON", ("ON", "OFF")) == "ON",
            uvloop=env_choice(env, "SURGE_UVLOOP", "ON", ("ON", "OFF")) == "ON",
            auth=env_choice(env, "SURGE_AUTH", "JWT", ("JWT", "NONE")),
            jwt_secret=_jwt_secret(env),
            jwt_jwks_file=Path(env["SURGE_JWT_JWKS_FILE"])
            if env.get("SURGE_JWT_JWKS_FILE")
            else None,
            jwt_audience=env.get("SURGE_JWT_AUDIENCE") or "surge",
            jwt_issuer=env.get("SURGE_JWT_ISSUER") or "surge",
            jwt_leeway_seconds=env_positive_float(env, "SURGE_JWT_LEEWAY_SECONDS", 30.0),
            reflection=env_choice(
                env, "SURGE_REFLECTION", "AUTHENTICATED", ("OPEN", "AUTHENTICATED", "OFF")
            ),
            program=program,
        )

    @property
    def has_jwt_keys(self) -> bool:
        return self.jwt_secret is not None or self.jwt_jwks_file is not None

    def jwt_keys(self) -> Keys:
        """The keys credentials are checked with (reads the JWKS file)."""
        if not self.has_jwt_keys:
            raise ConfigError(
                "credentials are on (SURGE_AUTH=JWT) but nothing checks them: set "
                "SURGE_JWT_SECRET_FILE, SURGE_JWT_SECRET or SURGE_JWT_JWKS_FILE "
                "(or SURGE_AUTH=NONE to run without credentials)"
            )
        return Keys.load(
            secret=self.jwt_secret,
            jwks_file=self.jwt_jwks_file,
            audience=self.jwt_audience,
            issuer=self.jwt_issuer,
            leeway_s=self.jwt_leeway_seconds,
        )


# HS256 needs at least as many bytes of secret as the hash has (RFC 7518 section 3.2).
JWT_SECRET_MIN_BYTES = 32


def _jwt_secret(env: Mapping[str, str]) -> bytes | None:
    """SURGE_JWT_SECRET_FILE (a file holding the secret; preferred: it stays out of the
    process's environment) or SURGE_JWT_SECRET; not both."""
    path, inline = env.get("SURGE_JWT_SECRET_FILE"), env.get("SURGE_JWT_SECRET")
    if path and inline:
        raise ConfigError("set SURGE_JWT_SECRET_FILE or SURGE_JWT_SECRET, not both")
    if path:
        try:
            secret = Path(path).read_bytes().strip()
        except OSError as e:
            raise ConfigError(f"SURGE_JWT_SECRET_FILE {path}: {e.strerror}") from None
        name = "SURGE_JWT_SECRET_FILE"
    elif inline:
        secret, name = inline.encode(), "SURGE_JWT_SECRET"
    else:
        return None
    if len(secret) < JWT_SECRET_MIN_BYTES:
        raise ConfigError(f"{name}: the secret must be at least {JWT_SECRET_MIN_BYTES} bytes")
    return secret


def _metrics_address(env: Mapping[str, str]) -> tuple[str, int]:
    """SURGE_METRICS_ADDRESS, "host:port" (IPv6 in brackets); SURGE_METRICS_PORT, when set,
    overrides the port (0: no metrics endpoint)."""
    raw = env.get("SURGE_METRICS_ADDRESS", "127.0.0.1:9464").strip()
    host, sep, port = raw.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"SURGE_METRICS_ADDRESS must be host:port, got {raw!r}")
    return host, int(port)


def _store_url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    """A store's URL, checked for what can be checked without connecting: its scheme and
    a numeric port (no host is the driver's default, a local socket or localhost). The message never repeats the URL: it may
    hold a password."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    wanted = " or ".join(f"{s}://" for s in schemes)
    parts = urlsplit(raw)
    if not parts.scheme or "://" not in raw:
        raise ConfigError(f"{name} must be a URL starting with {wanted} (it has no scheme)")
    if parts.scheme.lower() not in schemes:
        raise ConfigError(f"{name} must start with {wanted}, not {parts.scheme}://")
    try:
        parts.port  # noqa: B018 - parses the port, raising on one that is not a number
    except ValueError:
        raise ConfigError(f"{name} has a port that is not a number from 0 to 65535") from None
    if parts.scheme.lower() == "unix" and not parts.path:
        raise ConfigError(f"{name}: a unix:// URL needs the socket's path")
    return raw


def _redis_url(env: Mapping[str, str]) -> str | None:
    """REDIS_URL: one server (redis://, rediss://, unix://) or a Redis Cluster
    (redis+cluster://host:port,host:port; common/redis_client.py)."""
    raw = env.get("REDIS_URL", "").strip()
    if raw and is_cluster_url(raw):
        parse_cluster_url(raw, "REDIS_URL")  # a malformed one says what is wrong
        return raw
    return _store_url(env, "REDIS_URL", STANDALONE_SCHEMES + CLUSTER_SCHEMES)


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    return Path(raw) if raw else None


def is_loopback(address: str) -> bool:
    """Whether a gRPC address ("host:port", IPv6 in brackets) listens on loopback only."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost, or empty (every interface)
        return False


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _duration(env: Mapping[str, str], name: str, default: int) -> int:
    """Seconds from "7d", "12h", "30m", "3600s" or "3600"; at least a minute, at most ten
    years."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    unit = _UNITS.get(raw[-1])
    digits = raw[:-1] if unit is not None else raw
    if not digits.isdigit():
        raise ConfigError(f"{name} must be a duration like 7d, 12h, 30m or 3600s, got {raw!r}")
    value = int(digits) * (unit or 1)
    if not 60 <= value <= 10 * 365 * 86_400:
        raise ConfigError(f"{name} must be between 1 minute and 10 years, got {raw!r}")
    return value
