"""TLS: self-signed and private-CA hubs, and each failure's own one-line reason."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import CONNECTED, WorkerProcess, giskard_command

from giskard.client import HubClient
from giskard.errors import ConfigurationError, HubUnavailableError
from giskard.hub import Hub
from giskard.tls import ServerCertificate, channel_security, fingerprint_of_pem, self_signed


def _certificate(subject: str, issuer_key: object, issuer: str, public_key: object, ca: bool):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_private_ca(directory: Path, name: str) -> tuple[Path, ServerCertificate]:
    """A CA (its PEM) and a hub certificate it signed for localhost and 127.0.0.1."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory.mkdir(parents=True)
    ca_key, hub_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_cert = _certificate(name, ca_key, name, ca_key.public_key(), ca=True)
    hub_cert = _certificate("hub", ca_key, name, hub_key.public_key(), ca=False)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (directory / "hub.pem").write_bytes(hub_cert.public_bytes(pem))
    (directory / "hub.key").write_bytes(
        hub_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "ca.pem", ServerCertificate(directory / "hub.pem", directory / "hub.key")


@pytest.fixture
def self_signed_hub(tmp_path: Path) -> Iterator[Hub]:
    with Hub(port=0, tls=self_signed(tmp_path / "tls", "127.0.0.1")) as hub:
        yield hub


def worker_on(hub: Hub, start: Callable[..., WorkerProcess], *args: str) -> WorkerProcess:
    return start("-h", "127.0.0.1", "-p", str(hub.port), *args)


def test_self_signed_certificate_is_kept_private_and_reused(tmp_path: Path) -> None:
    first = self_signed(tmp_path / "tls", "127.0.0.1")
    assert oct(first.key_file.stat().st_mode & 0o777) == "0o600"
    assert oct(first.key_file.parent.stat().st_mode & 0o777) == "0o700"
    assert self_signed(tmp_path / "tls", "127.0.0.1").fingerprint() == first.fingerprint()
    assert len(first.fingerprint().split(":")) == 32
    # Started on another address it does not name: a new certificate that names it.
    kept = first.fingerprint()
    moved = self_signed(tmp_path / "tls", "192.0.2.7")
    assert moved.fingerprint() != kept
    assert self_signed(tmp_path / "tls", "192.0.2.7").fingerprint() == moved.fingerprint()


def test_worker_and_client_trusting_the_hub_certificate_work(
    self_signed_hub: Hub, start_worker: Callable[..., WorkerProcess], iris: tuple
) -> None:
    ca_file = str(self_signed_hub.tls.cert_file)
    worker = worker_on(self_signed_hub, start_worker, "--ca-file", ca_file)
    worker.wait_for_output(CONNECTED)
    model, data = iris
    with HubClient(self_signed_hub.address, ca_file=ca_file) as client:
        np.testing.assert_array_equal(client.predict(model, data), model.predict(data))


def test_an_untrusted_certificate_is_named_by_its_fingerprint(
    self_signed_hub: Hub, start_worker: Callable[..., WorkerProcess]
) -> None:
    fingerprint = self_signed_hub.tls.fingerprint()
    worker = worker_on(self_signed_hub, start_worker, "--tls")
    worker.wait_for_output("TLS verification failed")
    line = next(x for x in worker.output.splitlines() if "TLS verification failed" in x)
    assert f"certificate (SHA-256 {fingerprint}) is not trusted" in line
    assert "Traceback" not in worker.output and "Handshake failed" not in worker.output
    with (
        HubClient(self_signed_hub.address, tls=True) as client,
        pytest.raises(HubUnavailableError, match=f"SHA-256 {fingerprint}"),
    ):
        client.workers()


def test_plaintext_against_tls_says_so(
    self_signed_hub: Hub, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = worker_on(self_signed_hub, start_worker)
    worker.wait_for_output("the hub serves TLS but this connection is plaintext")
    with (
        # An explicit key: with the local admin key it would take the private Unix socket.
        HubClient(self_signed_hub.address, api_key=self_signed_hub.admin_key) as client,
        pytest.raises(HubUnavailableError, match="serves TLS but this connection is plaintext"),
    ):
        client.workers()


def test_tls_against_plaintext_says_so(
    hub: Hub, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = worker_on(hub, start_worker, "--tls")
    worker.wait_for_output("TLS handshake failed: the hub does not serve TLS")
    assert "Traceback" not in worker.output


def test_a_private_ca_is_trusted_and_another_ca_is_not(
    tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    ca, certificate = make_private_ca(tmp_path / "ours", "our CA")
    other_ca, _ = make_private_ca(tmp_path / "theirs", "their CA")
    with Hub(port=0, tls=certificate) as hub:
        worker_on(hub, start_worker, "--ca-file", str(ca)).wait_for_output(CONNECTED)
        wrong = worker_on(hub, start_worker, "--ca-file", str(other_ca))
        wrong.wait_for_output("TLS verification failed")
        fingerprint = fingerprint_of_pem(certificate.cert_file.read_bytes())
        assert f"SHA-256 {fingerprint}" in wrong.output and str(other_ca) in wrong.output


def test_a_hub_on_the_network_needs_tls_or_insecure() -> None:
    with pytest.raises(ConfigurationError, match="without TLS"):
        Hub(host="0.0.0.0", port=0)
    result = subprocess.run(
        giskard_command("hub", "start", "-h", "0.0.0.0", "-p", "1"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 78
    assert result.stderr.strip().splitlines() == [
        "giskard: error: listening on 0.0.0.0 without TLS exposes keys and data: give a"
        " certificate (--tls-cert/--tls-key or --tls-self-signed), or --insecure"
    ]


def test_channel_security_rules(caplog: pytest.LogCaptureFixture) -> None:
    assert not channel_security("localhost").tls
    assert not channel_security("127.0.0.1").tls and not channel_security("::1").tls
    assert channel_security("localhost", tls=True).tls
    assert channel_security("hub.example.com").tls
    assert channel_security("hub.example.com").args() == ["--tls"]
    plain = channel_security("hub.example.com", insecure=True)
    assert not plain.tls and plain.args() == ["--insecure"]
    assert "unencrypted" in caplog.text
    with_ca = channel_security("hub.example.com", ca_file="ca.pem")
    assert with_ca.tls and with_ca.args() == ["--ca-file", os.path.abspath("ca.pem")]
    with pytest.raises(ConfigurationError, match="contradicts"):
        channel_security("hub.example.com", insecure=True, tls=True)


def test_start_d_carries_the_ca_file_to_the_service(
    tmp_path: Path, self_signed_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GISKARD_HOME", str(tmp_path / "home"))
    ca_file = str(self_signed_hub.tls.cert_file)
    args = ("-h", "127.0.0.1", "-p", str(self_signed_hub.port), "--ca-file", ca_file)
    command = giskard_command("worker", "start", "-d", *args, "--backend", "process")
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "GISKARD_API_KEY": self_signed_hub.admin_key},
        )
        assert result.returncode == 0, result.stderr
        assert "Connected to the Giskard server" in result.stdout
    finally:
        subprocess.run(giskard_command("worker", "stop", "-a"), capture_output=True, timeout=60)
