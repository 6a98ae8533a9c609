"""A tiny HTTP client for the console's tests: one request, a deadline, no redirect followed."""

from __future__ import annotations

import http.client
import re
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from conftest import giskard_command

TIMEOUT_S = 10.0
LOGIN_URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/login/once\?token=[\w-]+)")


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


def csrf_token(port: int, session: str) -> str:
    """The CSRF token the pages of this session put in their forms."""
    page = request(port, "/workers", headers={"Cookie": session})
    assert page.status == 200, page.body
    found = re.search(r'name="csrf" value="([^"]+)"', page.body)
    assert found is not None, page.body
    return found.group(1)


def act(
    port: int,
    path: str,
    session: str,
    csrf: str,
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Reply:
    """POST an action form (the CSRF token and `form`), as a page of this session would."""
    sent = {"Cookie": session, "Origin": f"http://127.0.0.1:{port}", **(headers or {})}
    return request(port, path, method="POST", headers=sent, form={"csrf": csrf, **(form or {})})


def one_time_login_path(port: int) -> str:
    """The path of the one-time login URL `giskard hub console` prints for the console on
    `port`."""
    printed = subprocess.run(
        giskard_command("hub", "console", "-p", str(port), "--no-browser"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert printed.returncode == 0, printed.stderr
    found = LOGIN_URL.search(printed.stdout)
    assert found is not None, printed.stdout
    assert int(found.group(1)) == port
    return found.group(2)


def job_path(port: int, session: str, job_id: str) -> str:
    """The path of the console's page for the job its client knows as `job_id`, as linked
    from /jobs."""
    page = request(port, "/jobs", headers={"Cookie": session})
    assert page.status == 200, page.body
    found = re.search(rf'data-job-id="{re.escape(job_id)}".*?href="(/jobs/[^"]+)"', page.body, re.S)
    assert found is not None, page.body
    return found.group(1)
