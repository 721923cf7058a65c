"""TLS on the gRPC port, through real channels: the handshake, mTLS, certificates replaced
while serving (on request and when the files change), and the rules that keep plaintext
a choice. Certificates are made here, with a CA of their own per test."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server import tls
from server.app import Stores
from server.config import ConfigError, Settings
from tests import auth
from tests.conftest import Running, StartServer
from tests.factories import Api

# --- certificates -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class Authority:
    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls, name: str) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            _builder(subject, subject, key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(name, cert, key)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str) -> Pem:
        """A leaf certificate for 127.0.0.1 and localhost, good for a server or a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (
            _builder(subject, self.cert.subject, key)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Pem(
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )


@dataclass(frozen=True)
class ServerFiles:
    cert: Path
    key: Path

    def write(self, pem: Pem) -> None:
        """As a rotation should: each file written aside, then renamed over the old one."""
        for path, data in ((self.cert, pem.cert), (self.key, pem.key)):
            aside = path.with_suffix(".new")
            aside.write_bytes(data)
            os.replace(aside, path)


@pytest.fixture
def files(tmp_path: Path) -> ServerFiles:
    return ServerFiles(tmp_path / "server.crt", tmp_path / "server.key")


# --- channels -----------------------------------------------------------------------------


@asynccontextmanager
async def secure(
    port: int, trusting: Authority, client: Pem | None = None
) -> AsyncIterator[grpc.aio.Channel]:
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(
            root_certificates=trusting.pem,
            private_key=client.key if client else None,
            certificate_chain=client.cert if client else None,
        ),
        # gRPC's own call credential: `authorization: Bearer <token>` on every call.
        grpc.access_token_call_credentials(auth.token()),
    )
    # A subchannel of its own: a new connection, so a new handshake, every time.
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options) as channel:
        yield channel


async def check(channel: grpc.aio.Channel) -> str:
    """Health/Check through the channel: "SERVING", or the status code that stopped it."""
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=3
        )
    except grpc.aio.AioRpcError as e:
        return e.code().name
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def answer(port: int, trusting: Authority, client: Pem | None = None) -> str:
    async with secure(port, trusting, client) as channel:
        return await check(channel)


async def tls_server(start_server: StartServer, files: ServerFiles, ca: Authority) -> Running:
    files.write(ca.issue("surge-1"))
    return await start_server(tls_cert_file=files.cert, tls_key_file=files.key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def no_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are not looked at again on their own: only a requested reload reads them."""
    monkeypatch.setattr(tls, "CHECK_INTERVAL_S", 3600.0)


# --- serving ------------------------------------------------------------------------------


async def test_a_tls_client_gets_answers(start_server: StartServer, files: ServerFiles) -> None:
    ca = Authority.new("ca")
    running = await tls_server(start_server, files, ca)
    async with secure(running.app.port, ca) as channel:
        assert await check(channel) == "SERVING"
        item = await Api(channel).item(stock=3)
        assert item.stock_on_hand == 3


async def test_a_plaintext_client_is_not_answered(
    start_server: StartServer, files: ServerFiles
) -> None:
    running = await tls_server(start_server, files, Authority.new("ca"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.app.port}") as channel:
        assert await check(channel) == "UNAVAILABLE"


async def test_mtls_answers_only_clients_certified_by_its_ca(
    start_server: StartServer, files: ServerFiles, tmp_path: Path
) -> None:
    ca, clients, strangers = Authority.new("ca"), Authority.new("clients"), Authority.new("x")
    files.write(ca.issue("surge"))
    (tmp_path / "clients.crt").write_bytes(clients.pem)
    running = await start_server(
        tls_cert_file=files.cert,
        tls_key_file=files.key,
        tls_client_ca_file=tmp_path / "clients.crt",
    )
    port = running.app.port
    assert await answer(port, ca) == "UNAVAILABLE"  # no client certificate
    assert await answer(port, ca, strangers.issue("gateway")) == "UNAVAILABLE"
    assert await answer(port, ca, clients.issue("gateway")) == "SERVING"


# --- reloading ----------------------------------------------------------------------------


@pytest.mark.usefixtures("no_polling")
async def test_a_requested_reload_serves_the_new_certificate_to_new_connections(
    start_server: StartServer, files: ServerFiles
) -> None:
    old, new = Authority.new("old"), Authority.new("new")
    running = await tls_server(start_server, files, old)
    assert running.app.certificates is not None
    async with secure(running.app.port, old) as before:
        assert await check(before) == "SERVING"
        files.write(new.issue("surge-2"))
        running.app.reload_certificates()  # what SIGHUP calls
        assert await answer(running.app.port, new) == "SERVING"
        assert await answer(running.app.port, old) == "UNAVAILABLE"
        assert await check(before) == "SERVING"  # an open connection keeps its certificate


async def test_changed_files_are_picked_up_without_a_signal(
    start_server: StartServer, files: ServerFiles
) -> None:
    old, new = Authority.new("old"), Authority.new("new")
    running = await tls_server(start_server, files, old)
    files.write(new.issue("surge-2"))
    deadline = time.monotonic() + 10 * tls.CHECK_INTERVAL_S
    while await answer(running.app.port, new) != "SERVING":
        assert time.monotonic() < deadline, "the new certificate was never served"
        await asyncio.sleep(0.2)
    assert await answer(running.app.port, old) == "UNAVAILABLE"


@pytest.mark.usefixtures("no_polling")
async def test_a_bad_file_at_reload_keeps_the_old_certificate(
    start_server: StartServer, files: ServerFiles, caplog: pytest.LogCaptureFixture
) -> None:
    ca = Authority.new("ca")
    running = await tls_server(start_server, files, ca)
    good_key = files.key.read_bytes()
    files.write(Pem(cert=b"not a certificate", key=good_key))
    running.app.reload_certificates()
    assert await answer(running.app.port, ca) == "SERVING"
    assert str(files.cert) in reload_errors(caplog)[-1]
    # A key that is not the certificate's: refused too, and its contents never logged.
    files.write(Pem(cert=ca.issue("surge-2").cert, key=good_key))
    running.app.reload_certificates()
    assert await answer(running.app.port, ca) == "SERVING"
    assert str(files.key) in reload_errors(caplog)[-1]
    assert len(reload_errors(caplog)) == 2
    assert good_key.decode() not in caplog.text


def reload_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and r.getMessage().startswith("TLS reload failed")
    ]


async def test_surge_serve_reloads_on_sighup(
    clean: Stores, files: ServerFiles, tmp_path: Path
) -> None:
    """The signal itself, through `surge serve`: SIGHUP reaches the handler, and new
    connections get the new certificate. (The files changed too, so this alone does not
    prove the request does it: the in-process test above does.)"""
    old, new = Authority.new("old"), Authority.new("new")
    files.write(old.issue("surge-1"))
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": clean.database_url,
        "REDIS_URL": clean.redis_url,
        "SURGE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SURGE_METRICS_PORT": "0",
        "SURGE_JWT_SECRET": auth.TEST_SECRET.decode(),
        "SURGE_TLS_CERT_FILE": str(files.cert),
        "SURGE_TLS_KEY_FILE": str(files.key),
        "SURGE_DRAIN_SECONDS": "0",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:  # a file, not a pipe nobody reads while it serves
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "serve", env=env, stdout=sink, stderr=sink
        )
    try:
        deadline = time.monotonic() + 30
        while await answer(port, old) != "SERVING":
            assert time.monotonic() < deadline, "surge serve did not start"
            await asyncio.sleep(0.2)
        files.write(new.issue("surge-2"))
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while await answer(port, new) != "SERVING":
            assert time.monotonic() < deadline, "SIGHUP did not reload the certificate"
            await asyncio.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = log.read_text()
    assert "TLS certificate reload requested" in output, output
    assert "TLS certificate reloaded" in output, output


async def test_surge_serve_refuses_an_unusable_file_cleanly(
    clean: Stores, files: ServerFiles
) -> None:
    files.write(Pem(cert=b"garbage", key=b"garbage"))
    env = {
        **os.environ,
        "DATABASE_URL": clean.database_url,
        "REDIS_URL": clean.redis_url,
        "SURGE_GRPC_ADDRESS": f"127.0.0.1:{_free_port()}",
        "SURGE_METRICS_PORT": "0",
        "SURGE_JWT_SECRET": auth.TEST_SECRET.decode(),
        "SURGE_TLS_CERT_FILE": str(files.cert),
        "SURGE_TLS_KEY_FILE": str(files.key),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert f"configuration error: {files.cert}: not a PEM certificate" in err.decode()
    assert "Traceback" not in err.decode()


def test_unusable_files_are_named(files: ServerFiles, tmp_path: Path) -> None:
    ca = Authority.new("ca")
    files.write(ca.issue("surge"))
    other_key = ca.issue("other").key
    missing = tmp_path / "missing.crt"
    (tmp_path / "other.key").write_bytes(other_key)
    (tmp_path / "garbage.crt").write_bytes(b"garbage")
    cases = [
        (tls.Files(missing, files.key, None), f"{missing}: cannot be read"),
        (tls.Files(files.cert, tmp_path / "other.key", None), f"{tmp_path / 'other.key'}: not"),
        (tls.Files(files.cert, files.key, tmp_path / "garbage.crt"), "garbage.crt: not a PEM CA"),
    ]
    for wrong, message in cases:
        with pytest.raises(ConfigError, match=message):
            tls.read(wrong)
    assert tls.read(tls.Files(files.cert, files.key, None)).chain == files.cert.read_bytes()


# --- settings -----------------------------------------------------------------------------

TLS_FILES = {
    "SURGE_TLS_CERT_FILE": "/etc/surge/tls.crt",
    "SURGE_TLS_KEY_FILE": "/etc/surge/tls.key",
}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SURGE_TLS_CERT_FILE": "/c"}, "SURGE_TLS_CERT_FILE and SURGE_TLS_KEY_FILE must be set"),
        ({"SURGE_TLS_KEY_FILE": "/k"}, "SURGE_TLS_CERT_FILE and SURGE_TLS_KEY_FILE must be set"),
        ({"SURGE_TLS_CLIENT_CA_FILE": "/ca"}, "SURGE_TLS_CLIENT_CA_FILE needs SURGE_TLS_CERT"),
        ({**TLS_FILES, "SURGE_PLAINTEXT": "1"}, "SURGE_PLAINTEXT and SURGE_TLS_CERT_FILE"),
        ({"SURGE_GRPC_ADDRESS": "0.0.0.0:50051"}, "not a loopback address: set SURGE_TLS_CERT"),
        ({"SURGE_GRPC_ADDRESS": "[::]:50051"}, "not a loopback address"),
        ({"SURGE_GRPC_ADDRESS": "10.0.0.5:50051"}, "not a loopback address"),
        ({"SURGE_GRPC_ADDRESS": "surge.internal:50051"}, "not a loopback address"),
        ({"SURGE_PLAINTEXT": "yes"}, "SURGE_PLAINTEXT must be one of"),
    ],
)
def test_transport_settings_that_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env)


@pytest.mark.parametrize(
    "address", ["127.0.0.1:50051", "127.1.2.3:0", "[::1]:50051", "localhost:50051"]
)
def test_plaintext_on_loopback_needs_no_choice(address: str) -> None:
    settings = Settings.load({"SURGE_GRPC_ADDRESS": address})
    assert settings.tls_cert_file is None and not settings.plaintext


def test_plaintext_off_loopback_must_be_chosen() -> None:
    for chosen in ("1", "true", "TRUE"):
        settings = Settings.load({"SURGE_GRPC_ADDRESS": "0.0.0.0:50051", "SURGE_PLAINTEXT": chosen})
        assert settings.plaintext
    assert not Settings.load({"SURGE_PLAINTEXT": "0"}).plaintext


def test_tls_settings_are_read() -> None:
    settings = Settings.load(
        {
            **TLS_FILES,
            "SURGE_TLS_CLIENT_CA_FILE": "/etc/surge/clients.crt",
            "SURGE_GRPC_ADDRESS": "0.0.0.0:50051",
        }
    )
    assert settings.tls_cert_file == Path("/etc/surge/tls.crt")
    assert settings.tls_key_file == Path("/etc/surge/tls.key")
    assert settings.tls_client_ca_file == Path("/etc/surge/clients.crt")
    assert not settings.plaintext


async def test_each_transport_says_what_it_serves(
    start_server: StartServer, files: ServerFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.tls")
    await start_server()
    assert "plaintext gRPC on loopback 127.0.0.1:0 (set SURGE_TLS_CERT_FILE" in caplog.text
    await tls_server(start_server, files, Authority.new("ca"))
    assert "TLS gRPC on 127.0.0.1:0, certificate" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_plaintext_chosen_off_loopback_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    class Unbound:  # records the address instead of opening it to the network
        def add_insecure_port(self, address: str) -> int:
            self.address = address
            return 50051

    settings = Settings.load({"SURGE_GRPC_ADDRESS": "0.0.0.0:50051", "SURGE_PLAINTEXT": "1"})
    server = Unbound()
    assert tls.add_port(server, settings, None) == 50051  # type: ignore[arg-type]
    assert server.address == "0.0.0.0:50051"
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "plaintext gRPC on 0.0.0.0:50051" in warning.getMessage()
