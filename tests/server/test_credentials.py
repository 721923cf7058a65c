"""Credentials and scopes through a real channel: every method against every scope, the
hostile credential forms, keys from a JWKS file, health and reflection, the token command."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server import scopes
from server.cli import main as surge
from server.config import ConfigError, Settings
from server.credentials import Verifier
from server.registry import SERVICE_NAMES
from tests import auth
from tests.conftest import Running, StartServer
from tests.factories import failure
from tests.server.test_lifecycle import reflect

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def bare(server: Running) -> AsyncIterator[grpc.aio.Channel]:
    """A channel that sends no credential unless a call passes one."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.app.port}") as channel:
        yield channel


async def call(
    channel: grpc.aio.Channel, method: str, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.aio.AioRpcError | None:
    """Calls `method` with an empty request (valid bytes for every message); the error, or
    None on success."""
    try:
        await channel.unary_unary(method)(b"", metadata=metadata, timeout=10)  # type: ignore[arg-type]
    except grpc.aio.AioRpcError as e:
        return e
    return None


def test_every_rpc_in_the_protos_has_scopes() -> None:
    from server.registry import rpc_methods

    methods = {f"/{service}/{method}" for service, method in rpc_methods()}
    assert methods == set(scopes.SCOPES_BY_METHOD)
    assert all(needed <= set(scopes.ALL) for needed in scopes.SCOPES_BY_METHOD.values())


async def test_each_scope_reaches_exactly_the_methods_listed_for_it(
    bare: grpc.aio.Channel,
) -> None:
    tokens = {scope: auth.bearer(auth.token([scope])) for scope in scopes.ALL}
    for method, needed in scopes.SCOPES_BY_METHOD.items():
        for scope, metadata in tokens.items():
            error = await call(bare, method, metadata)
            code = error.code() if error else grpc.StatusCode.OK
            if scope in needed:
                assert code not in (
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.UNAUTHENTICATED,
                ), (method, scope)
            else:
                assert error is not None, (method, scope)
                f = failure(error)
                assert (f.code, f.reason) == (
                    grpc.StatusCode.PERMISSION_DENIED,
                    "SCOPE_MISSING",
                ), (method, scope)
                assert f.metadata["needed_scopes"] == " ".join(sorted(needed))


async def test_a_refused_scope_says_nothing_of_whether_the_resource_exists(
    server: Running, bare: grpc.aio.Channel
) -> None:
    from loyalty.v1 import redemption_pb2

    member = await server.api.member(points=100)
    request = redemption_pb2.GetRedemptionRequest(
        redemption_id="00000000-0000-0000-0000-000000000000", member_id=member.id
    )
    stub = server.api.redemptions
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.GetRedemption(request, metadata=auth.bearer(auth.token(["earning"])))
    assert failure(denied.value).reason == "SCOPE_MISSING"
    assert "not found" not in (denied.value.details() or "")


def _unsigned(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    return {
        "sub": "x",
        "scope": "operator",
        "aud": "surge",
        "iss": "surge",
        "exp": now + 600,
        **overrides,
    }


HOSTILE = {
    "empty": ("", "CREDENTIAL_MISSING"),
    "bearer-nothing": ("Bearer ", "CREDENTIAL_INVALID"),
    "basic": ("Basic dXNlcjpwYXNz", "CREDENTIAL_INVALID"),
    "garbage": ("Bearer not-a-jwt", "CREDENTIAL_INVALID"),
    "truncated": ("Bearer " + auth.token()[:-20], "CREDENTIAL_INVALID"),
    "wrong-signature": (
        "Bearer " + auth.token(secret=b"another-secret-that-is-long-enough!!"),
        "CREDENTIAL_INVALID",
    ),
    "expired": (
        "Bearer " + jwt.encode(_claims(exp=int(time.time()) - 3600), auth.TEST_SECRET, "HS256"),
        "CREDENTIAL_INVALID",
    ),
    "not-yet-valid": (
        "Bearer " + jwt.encode(_claims(nbf=int(time.time()) + 3600), auth.TEST_SECRET, "HS256"),
        "CREDENTIAL_INVALID",
    ),
    "alg-none": ("Bearer " + _unsigned(_claims()), "CREDENTIAL_INVALID"),
    "other-audience": ("Bearer " + auth.token(audience="billing"), "CREDENTIAL_INVALID"),
    "other-issuer": ("Bearer " + auth.token(issuer="evil"), "CREDENTIAL_INVALID"),
    "no-subject": (
        "Bearer "
        + jwt.encode({k: v for k, v in _claims().items() if k != "sub"}, auth.TEST_SECRET),
        "CREDENTIAL_INVALID",
    ),
    "scope-not-a-string": (
        "Bearer " + jwt.encode(_claims(scope={"a": 1}), auth.TEST_SECRET, "HS256"),
        "CREDENTIAL_INVALID",
    ),
    "hs512": (
        "Bearer " + jwt.encode(_claims(), auth.TEST_SECRET * 2, "HS512"),
        "CREDENTIAL_INVALID",
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_credentials_are_unauthenticated_without_a_traceback(
    server: Running, bare: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    header, reason = HOSTILE[name]
    caplog.set_level(logging.INFO)
    metadata = (("authorization", header),) if header else ()

    error = await call(bare, "/loyalty.v1.CatalogService/AdjustStock", metadata)

    assert error is not None
    f = failure(error)
    assert (f.code, f.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    secret_part = header.rpartition(".")[2]
    if len(secret_part) > 8:  # the token's signature never reaches a log line
        assert secret_part not in caplog.text
    refused = server.app.metrics.auth_refused.labels(reason)._value.get()
    assert refused >= 1


async def test_a_cached_credential_still_expires(
    start_server: StartServer,
) -> None:
    running = await start_server(jwt_leeway_seconds=0.001)
    short = auth.bearer(auth.token(["operator"], ttl_s=1))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.app.port}") as channel:
        assert await call(channel, "/loyalty.v1.CampaignService/ListCampaigns", short) is None
        time.sleep(1.2)  # noqa: ASYNC251 - the server must see the token expire
        error = await call(channel, "/loyalty.v1.CampaignService/ListCampaigns", short)
    assert error is not None
    assert failure(error).metadata["problem"] == "expired"


def _jwks(tmp_path: Path, keys: dict[str, object]) -> Path:
    documents = []
    for kid, private in keys.items():
        public = private.public_key()  # type: ignore[attr-defined]
        alg = "ES256" if isinstance(private, ec.EllipticCurvePrivateKey) else "RS256"
        jwk = json.loads(jwt.get_algorithm_by_name(alg).to_jwk(public))
        documents.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": documents}))
    return path


async def test_tokens_from_an_identity_provider_are_checked_against_its_jwks(
    start_server: StartServer, tmp_path: Path
) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = _jwks(tmp_path, {"r1": rsa_key, "e1": ec_key})
    running = await start_server(jwt_secret=None, jwt_jwks_file=jwks)
    method = "/loyalty.v1.CampaignService/ListCampaigns"

    def signed(key: object, alg: str, kid: str) -> tuple[tuple[str, str], ...]:
        return auth.bearer(jwt.encode(_claims(), key, alg, headers={"kid": kid}))  # type: ignore[arg-type]

    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.app.port}") as channel:
        assert await call(channel, method, signed(rsa_key, "RS256", "r1")) is None
        assert await call(channel, method, signed(ec_key, "ES256", "e1")) is None
        refused = [
            await call(channel, method, signed(stranger, "RS256", "r1")),  # not its key
            await call(channel, method, signed(rsa_key, "RS256", "nope")),  # unknown kid
            await call(channel, method, auth.bearer(auth.token())),  # HS256: no secret here
        ]
        # Algorithm confusion: an HS256 token "signed" with the RSA public key as secret.
        forged = jwt.api_jws.PyJWS()
        forged._algorithms["HS256"].prepare_key = lambda key: key  # type: ignore[method-assign]
        token = forged.encode(json.dumps(_claims()).encode(), public_pem, "HS256")
        refused.append(await call(channel, method, auth.bearer(token)))
    for error in refused:
        assert error is not None
        assert failure(error).reason == "CREDENTIAL_INVALID"


async def test_health_needs_no_credential(bare: grpc.aio.Channel) -> None:
    reply = await health_pb2_grpc.HealthStub(bare).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_needs_a_credential_unless_opened(start_server: StartServer) -> None:
    from grpc_reflection.v1alpha import reflection_pb2

    listing = reflection_pb2.ServerReflectionRequest(list_services="")
    closed = await start_server()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await reflect(closed, "v1", listing, metadata=())
    assert failure(refused.value).reason == "CREDENTIAL_MISSING"
    [reply] = await reflect(closed, "v1", listing)  # with the test credential
    assert {s.name for s in reply.list_services_response.service} >= set(SERVICE_NAMES)

    opened = await start_server(reflection="OPEN")
    [reply] = await reflect(opened, "v1", listing, metadata=())
    assert {s.name for s in reply.list_services_response.service} >= set(SERVICE_NAMES)

    off = await start_server(reflection="OFF")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await reflect(off, "v1", listing)
    assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_the_access_log_names_the_subject(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="surge.access")
    await server.api.member()
    [line] = [r for r in caplog.records if getattr(r, "method", "").endswith("/CreateMember")]
    assert line.subject == auth.TEST_SUBJECT  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _logging_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    """`surge` sets up the process's logging; here that would leak into later tests."""
    monkeypatch.setattr("server.logs.setup_logging", lambda *a, **k: None)


def test_surge_token_prints_a_token_the_server_accepts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SURGE_JWT_SECRET", auth.TEST_SECRET.decode())
    code = surge(["token", "--scope", "payments", "--scope", "reports", "--subject", "pay-1"])
    token = capsys.readouterr().out.strip()
    assert code == 0
    principal = Verifier(Settings.load().jwt_keys()).principal(f"Bearer {token}")
    assert principal.subject == "pay-1"
    assert principal.scopes == {"payments", "reports"}


def test_surge_token_refuses_without_a_secret_outside_the_embedded_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("SURGE_JWT_SECRET", "SURGE_JWT_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1:1/x")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    assert surge(["token", "--scope", "all"]) == 2
    assert "SURGE_JWT_SECRET_FILE" in capsys.readouterr().err


def test_credential_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SURGE_JWT_SECRET_FILE"):
        Settings.load({}).jwt_keys()  # on, and nothing to check with
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        Settings.load({"SURGE_JWT_SECRET": "short"})
    secret_file = tmp_path / "secret"
    secret_file.write_text("s" * 40 + "\n")
    with pytest.raises(ConfigError, match="not both"):
        Settings.load({"SURGE_JWT_SECRET": "s" * 40, "SURGE_JWT_SECRET_FILE": str(secret_file)})
    assert Settings.load({"SURGE_JWT_SECRET_FILE": str(secret_file)}).jwt_secret == b"s" * 40
    with pytest.raises(ConfigError, match="SURGE_JWT_JWKS_FILE"):
        Settings.load({"SURGE_JWT_JWKS_FILE": str(tmp_path / "missing.json")}).jwt_keys()
    assert "s" * 40 not in repr(Settings.load({"SURGE_JWT_SECRET": "s" * 40}))
    assert Settings.load({"SURGE_AUTH": "none"}).auth == "NONE"
