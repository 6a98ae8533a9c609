"""Plain-language reasons for failed gRPC calls."""

from __future__ import annotations

import grpc


def describe_rpc_error(exc: grpc.aio.AioRpcError | grpc.RpcError) -> str:
    """A short, human reason for a failed call, without gRPC's internals."""
    details = (exc.details() or "").lower() if hasattr(exc, "details") else ""
    code = exc.code() if hasattr(exc, "code") else None
    for needle, reason in _REASONS:
        if needle in details:
            return reason
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "timed out"
    if code == grpc.StatusCode.CANCELLED:
        return "the connection was closed"
    return (details.splitlines() or [str(code)])[0]


_REASONS = [
    ("connection refused", "connection refused"),
    (
        "no such file or directory",
        "no hub of this user listens there (for another hub on this machine, give its key:"
        " $GISKARD_API_KEY or --api-key-file)",
    ),
    ("keepalive", "the link went silent (no answer to keepalive pings)"),
    ("ping timeout", "the link went silent (no answer to keepalive pings)"),
    ("dns resolution failed", "cannot resolve the host name"),
    ("lookup", "cannot resolve the host name"),
    ("domain name not found", "cannot resolve the host name"),
    ("name resolution", "cannot resolve the host name"),
    ("timeout", "timed out"),
    ("timed out", "timed out"),
    ("socket closed", "the connection was closed"),
    ("connection reset", "the connection was reset"),
    ("goaway", "the server is shutting down"),
    ("server shutdown", "the server is shutting down"),
    ("cancelling all calls", "the server is shutting down"),  # a hub stopped by a signal
    ("unreachable", "network unreachable"),
]
