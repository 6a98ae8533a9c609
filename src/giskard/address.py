"""Hub addresses: validation and the `host:port` form gRPC dials."""

from __future__ import annotations

from dataclasses import dataclass

from giskard.errors import UsageError

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 40051


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
