"""`giskard hub start` refuses what it cannot serve with one line of its own and the
right exit code: bad hosts, a busy port, another hub on its socket, broken key files."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import free_port, giskard_command

from giskard.client import HubClient
from giskard.credentials import local_socket_path
from giskard.hub import Hub

START_TIMEOUT_S = 30


def hub_start(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`giskard hub start ARGS`, which must exit by itself (it is refused)."""
    env = dict(os.environ)
    if home is not None:
        env["GISKARD_HOME"] = str(home)
    return subprocess.run(
        giskard_command("hub", "start", *args),
        capture_output=True,
        text=True,
        env=env,
        timeout=START_TIMEOUT_S,
    )


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("host", ["localhost:5", "256.1.1.1", "bad\x01host", "a..b", "[10.0.0.1]"])
@pytest.mark.parametrize("insecure", [False, True])
def test_a_malformed_host_is_a_usage_error(host: str, insecure: bool, tmp_path: Path) -> None:
    args = ["-h", host, "-p", str(free_port()), *(["--insecure"] if insecure else [])]
    refused = hub_start(*args, home=tmp_path)
    assert refused.returncode == 2
    assert "invalid host" in one_line(refused.stderr)


def test_a_busy_port_is_one_line_of_ours(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = hub_start("-h", "127.0.0.1", "-p", str(port), home=tmp_path)
    assert refused.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in one_line(refused.stderr)


def test_a_second_hub_on_the_same_socket_is_refused_and_the_first_keeps_it() -> None:
    port = free_port()
    with Hub("127.0.0.1", port):
        refused = hub_start("-h", "::1", "-p", str(port))
        assert refused.returncode == 78
        assert "another hub" in one_line(refused.stderr)
        path = local_socket_path(port)
        assert stat.S_ISSOCK(path.stat().st_mode)
        with HubClient(f"localhost:{port}") as client:  # the local admin key: the socket
            assert client.status()["workers"] == []
    assert not path.exists()


def prepared_home(tmp_path: Path) -> Path:
    hub = tmp_path / "hub"
    hub.mkdir(mode=0o700)
    return hub


@pytest.mark.parametrize("content", [b"\xff\xfe\x00gsk_", b"gsk_\x80\x81"])
def test_an_admin_key_file_of_bytes_is_refused_naming_it(content: bytes, tmp_path: Path) -> None:
    key_file = prepared_home(tmp_path) / "admin.key"
    key_file.write_bytes(content)
    refused = hub_start("-p", str(free_port()), home=tmp_path)
    assert refused.returncode == 78
    line = one_line(refused.stderr)
    assert str(key_file) in line and "not text" in line
    assert key_file.read_bytes() == content


def test_an_admin_key_path_that_is_a_directory_is_refused_naming_it(tmp_path: Path) -> None:
    key_dir = prepared_home(tmp_path) / "admin.key"
    key_dir.mkdir()
    refused = hub_start("-p", str(free_port()), home=tmp_path)
    assert refused.returncode == 78
    line = one_line(refused.stderr)
    assert str(key_dir) in line and "directory" in line


@pytest.mark.parametrize(
    ("field", "value"),
    [("revoked", "yes"), ("created_at", "x"), ("name", 3), ("role", "root"), ("sha256", None)],
)
def test_a_key_record_of_the_wrong_type_is_refused_at_start(
    field: str, value: object, tmp_path: Path
) -> None:
    record = {
        "name": "w",
        "role": "worker",
        "key_id": "0011aabb",
        "sha256": "0" * 64,
        "created_at": 1.0,
        "revoked": False,
    }
    keys = prepared_home(tmp_path) / "keys.json"
    keys.write_text(json.dumps({"keys": [{**record, field: value}]}))
    refused = hub_start("-p", str(free_port()), home=tmp_path)
    assert refused.returncode == 78
    line = one_line(refused.stderr)
    assert str(keys) in line and field in line


def test_a_hub_directory_it_cannot_use_is_refused_naming_it(tmp_path: Path) -> None:
    sockets = prepared_home(tmp_path) / "sockets"
    sockets.write_text("a file where the hub keeps its socket directory")
    refused = hub_start("-p", str(free_port()), home=tmp_path)
    assert refused.returncode == 78
    assert str(sockets) in one_line(refused.stderr)
