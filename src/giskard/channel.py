"""How every client of a hub (the worker, HubClient, the `giskard hub ...` commands) dials it.

The one place that turns an address, credentials and a security choice into a gRPC
channel, so that one rule holds for all of them: the local admin key goes only to the
hub's private Unix socket, never over plaintext TCP, where whoever took the port while the
hub was down would receive it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from giskard.credentials import Credentials, local_socket_path
from giskard.protocol import CHANNEL_OPTIONS

if TYPE_CHECKING:
    import grpc

    from giskard.address import HubAddress
    from giskard.tls import ChannelSecurity


def uses_local_socket(credentials: Credentials, security: ChannelSecurity) -> bool:
    """Whether these credentials go to the private socket rather than to host:port (TLS
    proves who answers on the port, so a TLS channel may carry the local key there)."""
    return credentials.is_local and not security.tls


def dial_target(address: HubAddress, credentials: Credentials, security: ChannelSecurity) -> str:
    """The gRPC target for the hub at `address` with these credentials."""
    if uses_local_socket(credentials, security):
        return f"unix:{local_socket_path(address.port)}"
    return address.target


def open_channel(
    address: HubAddress, credentials: Credentials, security: ChannelSecurity
) -> grpc.Channel:
    """A blocking channel (HubClient)."""
    import grpc

    target = dial_target(address, credentials, security)
    if security.tls:
        return grpc.secure_channel(target, security.credentials(), options=CHANNEL_OPTIONS)
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


def open_aio_channel(
    address: HubAddress, credentials: Credentials, security: ChannelSecurity
) -> grpc.aio.Channel:
    """An asyncio channel (the worker)."""
    import grpc

    target = dial_target(address, credentials, security)
    if security.tls:
        return grpc.aio.secure_channel(target, security.credentials(), options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
