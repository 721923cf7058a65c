"""The rules that keep plaintext gRPC a choice: TLS needs its certificate and key together,
and plaintext off loopback must be asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, Settings

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
