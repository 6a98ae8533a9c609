"""TLS for the hub and the channels to it: certificates, fingerprints, and what a failed
handshake means.

The rules: a hub bound to a non-loopback address serves TLS unless told `--insecure`; a
worker or client uses TLS to a non-loopback hub (verifying it against the system roots or
`--ca-file`) unless told `--insecure`, and plaintext on loopback unless given `--tls` or
`--ca-file`.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from giskard.credentials import is_loopback
from giskard.errors import ConfigurationError
from giskard.installer.files import write_atomically

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelSecurity:
    """How a worker or client talks to the hub: plaintext, or TLS verified against `ca_file`
    (None: the system's roots)."""

    tls: bool
    ca_file: str | None = None
    insecure: bool = False  # plaintext to a non-loopback hub, explicitly asked for

    def credentials(self) -> object:
        import grpc

        return grpc.ssl_channel_credentials(root_certificates=self.ca_certificates())

    def ca_certificates(self) -> bytes | None:
        """The CA file's contents, None for the system's roots; ConfigurationError when it
        cannot be read."""
        return _read(Path(self.ca_file), "CA file") if self.ca_file else None

    def args(self) -> list[str]:
        """The command-line options that reproduce this choice (for services)."""
        if self.ca_file:
            return ["--ca-file", self.ca_file]
        if self.tls:
            return ["--tls"]
        return ["--insecure"] if self.insecure else []


def quiet_grpc_logs() -> None:
    """gRPC's core logs every failed handshake on stderr in its own format; a worker or a
    client says it once, in plain words. Must run before grpc is imported."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def channel_security(
    host: str, *, tls: bool = False, ca_file: str | None = None, insecure: bool = False
) -> ChannelSecurity:
    """Apply the rules above; refuse contradictory options."""
    if insecure and (tls or ca_file):
        raise ConfigurationError("--insecure contradicts --tls and --ca-file: choose one")
    if ca_file:
        return ChannelSecurity(True, str(Path(ca_file).expanduser().resolve()))
    if tls:
        return ChannelSecurity(True)
    if is_loopback(host):
        return ChannelSecurity(False)
    if insecure:
        logger.warning(
            "Plaintext to %s: the API key and the data cross the network unencrypted", host
        )
        return ChannelSecurity(False, insecure=True)
    return ChannelSecurity(True)


@dataclass(frozen=True)
class ServerCertificate:
    cert_file: Path
    key_file: Path

    def credentials(self) -> object:
        import grpc

        pair = (_read(self.key_file, "TLS key"), _read(self.cert_file, "TLS certificate"))
        return grpc.ssl_server_credentials([pair])

    def fingerprint(self) -> str:
        return fingerprint_of_pem(_read(self.cert_file, "TLS certificate"))


def fingerprint_of_pem(pem: bytes) -> str:
    return fingerprint_of_der(ssl.PEM_cert_to_DER_cert(pem.decode()))


def fingerprint_of_der(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def self_signed(directory: Path, host: str) -> ServerCertificate:
    """The hub's own certificate, made once and kept (key 0600) in `directory`; made
    again when it does not name `host` (the hub now listens elsewhere)."""
    cert = ServerCertificate(directory / "hub.crt", directory / "hub.key")
    if cert.cert_file.exists() and cert.key_file.exists():
        if _names_host(cert.cert_file, host):
            return cert
        logger.warning("The kept certificate does not name %s: making a new one", host)
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise ConfigurationError(
            "making a self-signed certificate needs the cryptography package:"
            " pip install 'giskard-worker[hub]'"
        ) from None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"giskard hub {socket.gethostname()}")]
    )
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(_alt_names(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomically(cert.key_file, key_pem.decode(), mode=0o600)
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    write_atomically(cert.cert_file, cert_pem, mode=0o600)
    logger.info("Created a self-signed TLS certificate in %s", directory)
    return cert


def _names_host(cert_file: Path, host: str) -> bool:
    import ipaddress

    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(_read(cert_file, "TLS certificate"))
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host in names.get_values_for_type(x509.DNSName)
    return address.is_unspecified or address in names.get_values_for_type(x509.IPAddress)


def _alt_names(host: str) -> list[object]:
    import ipaddress

    from cryptography import x509

    names: list[object] = [x509.DNSName("localhost"), x509.DNSName(socket.gethostname())]
    addresses = {"127.0.0.1", "::1"}
    if host in ("0.0.0.0", "::", ""):
        # Listening everywhere: workers may dial any of this machine's addresses.
        addresses |= _interface_addresses()
    try:
        if not ipaddress.ip_address(host).is_unspecified:
            addresses.add(host)
    except ValueError:
        if host not in ("localhost", socket.gethostname()):
            names.append(x509.DNSName(host))
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(addresses)]
    return names


def _interface_addresses() -> set[str]:
    import psutil

    return {
        address.address.split("%")[0]
        for addresses in psutil.net_if_addrs().values()
        for address in addresses
        if address.family in (socket.AF_INET, socket.AF_INET6)
    }


@dataclass(frozen=True)
class Probe:
    """What the server at an address speaks, learnt by a handshake that verifies nothing."""

    serves_tls: bool
    fingerprint: str | None = None


def probe(host: str, port: int, timeout_s: float = 3.0) -> Probe | None:
    """None when the address cannot be reached at all."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            try:
                with context.wrap_socket(raw, server_hostname=host) as tls:
                    der = tls.getpeercert(binary_form=True)
                    return Probe(True, fingerprint_of_der(der) if der else None)
            except (ssl.SSLError, ConnectionResetError, TimeoutError, OSError):
                return Probe(False)
    except OSError:
        return None


def explain_failure(
    reason: str, host: str, port: int, security: ChannelSecurity, *, local_socket: bool
) -> str:
    """`reason` for a failed connection, replaced by a TLS explanation when that is the cause.

    No probe when the reason is already plain (nothing listens, unknown host) or when the
    connection went over the local Unix socket, where TLS plays no part."""
    if local_socket or reason in ("connection refused", "cannot resolve the host name"):
        return reason
    return explain_handshake_failure(host, port, security) or reason


def explain_handshake_failure(host: str, port: int, security: ChannelSecurity) -> str | None:
    """A plain reason when a connection failed because of TLS, else None."""
    seen = probe(host, port)
    if seen is None:
        return None
    if security.tls and not seen.serves_tls:
        return (
            "TLS handshake failed: the hub does not serve TLS"
            " (drop --tls/--ca-file; to another machine, --insecure)"
        )
    if not security.tls and seen.serves_tls:
        return "the hub serves TLS but this connection is plaintext (use --tls or --ca-file)"
    if security.tls and seen.serves_tls:
        where = security.ca_file or "the system's roots"
        hint = "" if security.ca_file else " (use --ca-file)"
        return (
            f"TLS verification failed: the hub's certificate (SHA-256 {seen.fingerprint})"
            f" is not trusted by {where} or does not name {host}{hint}"
        )
    return None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {path}: {exc.strerror}") from None
