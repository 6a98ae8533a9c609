"""Hub addresses: validation and the `host:port` form gRPC dials."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from giskard.errors import UsageError

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 40051
DNS_NAME_MAX = 253
_DNS_LABEL = re.compile(r"[A-Za-z0-9-]{1,63}")


@dataclass(frozen=True)
class HubAddress:
    host: str
    port: int

    def __post_init__(self) -> None:
        host = self.host.strip()
        if not host:
            raise UsageError("the host must not be empty")
        if any(c.isspace() for c in host) or "/" in host:
            raise UsageError(f"invalid host {self.host!r}")
        if not 1 <= self.port <= 65535:
            raise UsageError(f"invalid port {self.port}: it must be between 1 and 65535")
        object.__setattr__(self, "host", host.removeprefix("[").removesuffix("]"))

    @property
    def target(self) -> str:
        """The gRPC target: IPv6 literals go in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.target


def parse_address(text: str) -> HubAddress:
    """Parse `host:port`, `[v6]:port` or a bare host (default port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not port_text:
        return HubAddress(host, DEFAULT_PORT)
    if not port_text.isdigit():
        raise UsageError(f"invalid port in address {text!r}")
    return HubAddress(host, int(port_text))


def validate_host(text: str) -> str:
    """`text` as a host to listen on or dial: an IPv4 or IPv6 literal (brackets allowed,
    and removed) or a DNS name. Raises UsageError("invalid host ...") for anything else."""
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise UsageError(f"invalid host {text!r}: only an IPv6 address goes in brackets")
    if _is_ip_literal(host) or _is_dns_name(host):
        return host
    raise UsageError(f"invalid host {text!r}: not an IP address or a DNS name")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_dns_name(host: str) -> bool:
    name = host.removesuffix(".")
    labels = name.split(".")
    # A name ending in a number is a mistyped IPv4 address (256.1.1.1), not a name.
    if not name or len(name) > DNS_NAME_MAX or labels[-1].isdigit():
        return False
    return all(_DNS_LABEL.fullmatch(label) for label in labels)
