"""TLS on the gRPC port, from certificate files that can be replaced without a restart.

gRPC core asks `Certificates.fetch` for its configuration at every new TLS handshake. The
answer is None (keep what you have) unless a reload was requested (SIGHUP calls
`request_reload`) or the files changed (mtime, size or inode; looked at no more than once a
second, so a surge of handshakes costs no file system calls). Then the files are read and
checked again, and a failure keeps the certificate being served and logs an ERROR naming the
file. Connections already open keep the certificate they were made with until they
reconnect. With a client CA, clients must present a certificate it signed (mTLS).
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from server.config import ConfigError, Settings, is_loopback

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0

# What a file was when last read: (mtime, size, inode), None when it could not be seen.
Stamp = tuple[tuple[int, int, int] | None, ...]


class TlsFileError(ConfigError):
    """A certificate, key or CA file is missing, unreadable or unusable; names the file."""


@dataclass(frozen=True)
class Files:
    cert: Path
    key: Path
    client_ca: Path | None

    def stamp(self) -> Stamp:
        return tuple(_stat(path) for path in (self.cert, self.key, self.client_ca))


@dataclass(frozen=True)
class Identity:
    """One read of the files, checked: what gRPC is handed, and the stamp it was read at."""

    chain: bytes
    key: bytes
    client_ca: bytes | None
    stamp: Stamp

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key, self.chain)], root_certificates=self.client_ca
        )

    def fingerprint(self) -> str:
        """SHA-256 of the leaf certificate, as `openssl x509 -fingerprint -sha256` shows it."""
        leaf = self.chain.decode("ascii").split("-----END CERTIFICATE-----")[0]
        begin = leaf.index("-----BEGIN CERTIFICATE-----")
        der = ssl.PEM_cert_to_DER_cert(leaf[begin:] + "-----END CERTIFICATE-----\n")
        return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def read(files: Files) -> Identity:
    """Reads and checks the files: a chain, its private key (unencrypted), the client CA."""
    stamp = files.stamp()
    chain, key = _read(files.cert), _read(files.key)
    client_ca = _read(files.client_ca) if files.client_ca else None
    # The stdlib's OpenSSL checks what gRPC's would refuse later, but at a handshake and with
    # no file named: a certificate that does not parse, a key that is not the certificate's.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with _refused(files.cert, "a PEM certificate"):
        context.load_verify_locations(cadata=chain.decode("ascii"))
    with _refused(files.key, f"an unencrypted PEM private key of {files.cert}"):
        context.load_cert_chain(files.cert, files.key, password=_no_password)
    if client_ca is not None:
        with _refused(files.client_ca, "a PEM CA certificate"):
            context.load_verify_locations(cadata=client_ca.decode("ascii"))
    # The key was checked through the paths: if a file changed since it was read, what was
    # read is not what was checked (a rotation caught half way).
    if files.stamp() != stamp:
        raise TlsFileError(f"{files.cert}, {files.key}: changed while being read; trying again")
    return Identity(chain, key, client_ca, stamp)


class Certificates:
    """The server's credentials, and the fetcher gRPC core calls to refresh them."""

    def __init__(self, files: Files) -> None:
        self.files = files
        identity = read(files)  # a TlsFileError here stops the start: nothing to serve yet
        self.fingerprint = identity.fingerprint()
        self._tried = identity.stamp  # the files as last read, successfully or not
        self._next_check = time.monotonic() + CHECK_INTERVAL_S
        self._reload = threading.Event()
        self._lock = threading.Lock()  # gRPC core calls fetch from its threads, several at once
        self.credentials = grpc.dynamic_ssl_server_credentials(
            identity.configuration(),
            self.fetch,  # type: ignore[arg-type]  # the stubs omit the None gRPC documents
            require_client_authentication=files.client_ca is not None,
        )

    def request_reload(self) -> None:
        """SIGHUP: the next handshake reads the files again, changed or not."""
        self._reload.set()
        log.info("TLS certificate reload requested: the next connection reads the files")

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            if not self._due():
                return None
            self._tried = self.files.stamp()  # a failure is retried once the files change again
            try:
                identity = read(self.files)
            except TlsFileError as e:
                log.error("TLS reload failed, still serving the previous certificate: %s", e)
                return None
            self._tried = identity.stamp
            self.fingerprint = identity.fingerprint()
            log.info("TLS certificate reloaded: %s (sha256 %s)", self.files.cert, self.fingerprint)
            return identity.configuration()

    def _due(self) -> bool:
        if self._reload.is_set():
            self._reload.clear()
            return True
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + CHECK_INTERVAL_S
        return self.files.stamp() != self._tried


def add_port(server: grpc.aio.Server, settings: Settings, certificates: Certificates | None) -> int:
    """Binds the gRPC address, with TLS when there are certificates; logs which transport."""
    address = settings.grpc_address
    if certificates is None:
        if is_loopback(address):
            log.info(
                "plaintext gRPC on loopback %s (set SURGE_TLS_CERT_FILE/SURGE_TLS_KEY_FILE for TLS)",
                address,
            )
        else:
            log.warning("plaintext gRPC on %s (SURGE_PLAINTEXT): traffic is not encrypted", address)
        return server.add_insecure_port(address)
    files = certificates.files
    mode = f"mTLS (clients certified by {files.client_ca})" if files.client_ca else "TLS"
    log.info(
        "%s gRPC on %s, certificate %s (sha256 %s)",
        mode,
        address,
        files.cert,
        certificates.fingerprint,
    )
    return server.add_secure_port(address, certificates.credentials)


def load(settings: Settings) -> Certificates | None:
    """The certificates the settings name, read and checked; None when serving plaintext."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return Certificates(
        Files(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
    )


def _stat(path: Path | None) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path) if path else None
    except OSError:  # missing for now: a state like any other, compared at the next check
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino) if st else None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise TlsFileError(f"{path}: cannot be read ({e.strerror})") from None


@contextmanager
def _refused(path: Path | None, what: str) -> Iterator[None]:
    try:
        yield
    except (ssl.SSLError, ValueError) as e:  # ValueError: not ASCII, so not PEM either
        reason = getattr(e, "reason", None) or str(e)
        raise TlsFileError(f"{path}: not {what} ({reason})") from None


def _no_password() -> str:
    # An encrypted key would make OpenSSL prompt on the terminal; refuse it instead.
    raise ValueError("the key is encrypted")
