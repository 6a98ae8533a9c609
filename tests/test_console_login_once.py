"""`giskard hub console`: a one-time login URL for the local admin, good once, for a while."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, giskard_command
from console_http import one_time_login_path, request

from giskard.credentials import hub_dir
from giskard.hub import Hub
from giskard.hub.keys import KeyStore
from giskard.tls import self_signed


@pytest.fixture
def console_hub(request: pytest.FixtureRequest) -> Iterator[Hub]:
    settings = getattr(request, "param", {})
    with Hub(port=0, console_port=0, **settings) as running:
        yield running


def test_the_printed_url_logs_in_once_and_leaves_its_url(
    console_hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    path = one_time_login_path(console_hub.console_port)
    port = console_hub.console_port
    used = request(port, path)
    assert (used.status, used.headers["location"]) == (303, "/workers")
    session = used.headers["set-cookie"].split(";", 1)[0]
    page = request(port, "/workers", headers={"Cookie": session})
    assert page.status == 200 and "(admin)" in page.body
    again = request(port, path)
    assert again.status == 401 and "set-cookie" not in again.headers
    assert "used already or has expired" in again.body
    token = path.rsplit("=", 1)[1]
    assert token not in caplog.text


@pytest.mark.parametrize("console_hub", [{"console_login_once_s": 0.0}], indirect=True)
def test_a_login_url_past_its_time_is_refused(console_hub: Hub) -> None:
    refused = request(console_hub.console_port, one_time_login_path(console_hub.console_port))
    assert refused.status == 401 and "set-cookie" not in refused.headers


def test_only_an_admin_key_gets_a_login_token(console_hub: Hub) -> None:
    _, client_key = KeyStore(hub_dir() / "keys.json").create("client")
    for headers in ({}, {"Authorization": f"Bearer {client_key}"}):
        reply = request(console_hub.console_port, "/login/token", method="POST", headers=headers)
        assert reply.status == 401
        assert "once" not in reply.body


def test_no_console_there_is_one_line_not_a_traceback() -> None:
    refused = subprocess.run(
        giskard_command("hub", "console", "-p", str(free_port()), "--no-browser"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 1
    assert len(refused.stderr.splitlines()) == 1 and "console" in refused.stderr


def test_under_tls_the_printed_url_is_https_and_logs_in(tmp_path: Path) -> None:
    certificate = self_signed(tmp_path / "tls", "127.0.0.1")
    with Hub(port=0, tls=certificate, console_port=0) as hub:
        port, ca_file = hub.console_port, certificate.cert_file
        printed = subprocess.run(
            giskard_command(
                "hub",
                "console",
                "-p",
                str(port),
                "--no-browser",
                "--tls",
                "--ca-file",
                str(ca_file),
            ),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert printed.returncode == 0, printed.stderr
        found = re.search(
            rf"https://127\.0\.0\.1:{port}(/login/once\?token=[\w-]+)", printed.stdout
        )
        assert found is not None, printed.stdout
        used = request(port, found.group(1), ca_file=ca_file)
        assert (used.status, used.headers["location"]) == (303, "/workers")
        session = used.headers["set-cookie"].split(";", 1)[0]
        page = request(port, "/workers", headers={"Cookie": session}, ca_file=ca_file)
        assert page.status == 200 and "(admin)" in page.body
