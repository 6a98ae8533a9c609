"""A tiny HTTP client for the console's tests: one request, a deadline, no redirect followed."""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

TIMEOUT_S = 10.0


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: str


def request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    ca_file: Path | None = None,
) -> Reply:
    """`ca_file`: over HTTPS, trusting this certificate."""
    if ca_file is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    else:
        context = ssl.create_default_context(cafile=str(ca_file))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=TIMEOUT_S, context=context
        )
    try:
        body = urlencode(form) if form is not None else None
        sent = dict(headers or {})
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read().decode())
    finally:
        connection.close()


def log_in(port: int, key: str) -> str:
    """The session cookie (`name=value`) a login with `key` sets; fails if refused."""
    reply = request(port, "/login", method="POST", form={"key": key})
    assert reply.status == 303, reply.body
    return reply.headers["set-cookie"].split(";", 1)[0]
