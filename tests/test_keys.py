"""API keys: storage, roles, revocation, and the one-line failures a user sees."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import CONNECTED, WorkerProcess, free_port, giskard_command, wait_until

from giskard.client import HubClient
from giskard.errors import AuthenticationError, ExitCode, KeyManagementError
from giskard.hub import Hub
from giskard.hub.keys import KeyStore


def test_keys_are_stored_hashed_in_a_private_file(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "hub" / "keys.json")
    record, key = store.create("worker", "w1")
    text = store.path.read_text()
    assert key not in text and key.split("_")[-1] not in text
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"
    assert oct(store.path.parent.stat().st_mode & 0o777) == "0o700"
    assert store.verify(key) == record
    assert store.verify(key + "x") is None and store.verify("nonsense") is None
    store.revoke("w1")
    assert store.verify(key) is None and store.is_revoked(key)
    # Another store over the same file (another hub of this home) sees the change.
    assert KeyStore(store.path).verify(key) is None


def test_key_management_errors(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    with pytest.raises(KeyManagementError, match="unknown role 'root'"):
        store.create("root")
    store.create("client", "c")
    with pytest.raises(KeyManagementError, match="exists already"):
        store.create("client", "c")
    with pytest.raises(KeyManagementError, match="no key named 'nope'"):
        store.revoke("nope")


def test_the_local_admin_key_is_private(hub: Hub) -> None:
    from giskard.credentials import local_admin_key_path

    path = local_admin_key_path()
    assert path.read_text().strip() == hub.admin_key
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def refused_worker(start_worker: Callable[..., WorkerProcess], hub: Hub, key: str) -> WorkerProcess:
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), api_key=key)
    assert worker.process.wait(20) == ExitCode.CONFIG
    return worker


def one_error_line(worker: WorkerProcess) -> str:
    assert "Traceback" not in worker.output
    (line,) = [line for line in worker.output.splitlines() if " ERROR " in line]
    return line


def test_a_wrong_key_is_fatal_with_one_line_on_both_sides(
    hub: Hub, start_worker: Callable[..., WorkerProcess], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    worker = refused_worker(start_worker, hub, "gsk_00000000_not-a-real-key")
    assert one_error_line(worker).endswith("refused this worker: unknown API key")
    assert any("open a worker session" in r.getMessage() for r in caplog.records)


def test_no_key_is_fatal_and_says_how_to_give_one(hub: Hub, tmp_path: Path) -> None:
    env = {**os.environ, "GISKARD_HOME": str(tmp_path / "elsewhere"), "GISKARD_API_KEY": ""}
    result = subprocess.run(
        giskard_command("worker", "start", "-h", "127.0.0.1", "-p", str(hub.port)),
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == ExitCode.CONFIG
    assert "refused this worker: no API key (set GISKARD_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_roles_limit_what_a_key_can_do(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess], iris: tuple
) -> None:
    _, worker_key = client.create_key("worker", "worker-1")
    _, client_key = client.create_key("client", "client-1")
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), api_key=worker_key)
    worker.wait_for_output(CONNECTED)
    model, data = iris
    with HubClient(hub.address, api_key=client_key) as platform:
        np.testing.assert_array_equal(platform.predict(model, data), model.predict(data))
        with pytest.raises(AuthenticationError, match="a client key cannot manage keys"):
            platform.create_key("admin")
    with HubClient(hub.address, api_key=worker_key) as impostor:
        with pytest.raises(AuthenticationError, match="a worker key cannot submit jobs"):
            impostor.predict(model, data)
        with pytest.raises(AuthenticationError, match="a worker key cannot list the workers"):
            impostor.workers()
    as_worker = refused_worker(start_worker, hub, client_key)
    assert "a client key cannot open a worker session" in one_error_line(as_worker)


def test_revoking_a_key_closes_its_worker_session(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    _, key = client.create_key("worker", "doomed")
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), api_key=key)
    worker.wait_for_output(CONNECTED)
    client.revoke_key("doomed")
    assert worker.process.wait(10) == ExitCode.CONFIG
    assert "the API key of this worker was revoked" in one_error_line(worker)
    assert client.workers() == []
    assert [k["revoked"] for k in client.list_keys() if k["name"] == "doomed"] == [True]


def test_hub_keys_commands(hub: Hub) -> None:
    def keys(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            giskard_command("hub", "keys", *args, "-h", "127.0.0.1", "-p", str(hub.port)),
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **(env or {})},
        )

    created = keys("create", "--role", "client", "--name", "ci")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("gsk_") and "not shown again" in created.stderr
    listed = keys("list")
    assert "ci" in listed.stdout and "client" in listed.stdout and key not in listed.stdout
    denied = keys("list", env={"GISKARD_API_KEY": key})
    assert denied.returncode == ExitCode.CONFIG
    assert denied.stderr.strip() == (
        f"giskard: error: the hub at 127.0.0.1:{hub.port} refused: a client key cannot manage keys"
    )
    assert keys("revoke", "ci").returncode == 0
    assert "revoked" in keys("list").stdout
    missing = keys("revoke", "nope")
    assert missing.returncode == 1 and "no key named 'nope'" in missing.stderr


def test_a_key_in_argv_works_with_a_warning(hub: Hub) -> None:
    result = subprocess.run(
        giskard_command(
            "hub", "workers", "-h", "127.0.0.1", "-p", str(hub.port), "--api-key", hub.admin_key
        ),
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "GISKARD_API_KEY": ""},
    )
    assert result.returncode == 0
    assert "visible to other users" in result.stderr


def test_zero_config_hub_and_worker_of_the_same_user_connect(
    tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    home, port = tmp_path / "home", free_port()
    env = {**os.environ, "GISKARD_HOME": str(home), "GISKARD_API_KEY": ""}
    hub_log = tmp_path / "hub.log"
    with (
        hub_log.open("wb") as log,
        subprocess.Popen(
            giskard_command("hub", "start", "-p", str(port)), stderr=log, env=env
        ) as hub,
    ):
        try:
            wait_until(lambda: "Hub listening" in hub_log.read_text(), 10, "the hub")
            worker = subprocess.run(
                giskard_command("hub", "workers", "-p", str(port), "--json"),
                capture_output=True,
                text=True,
                timeout=30,
                env=env,
            )
            assert worker.returncode == 0, worker.stderr
            assert json.loads(worker.stdout)["workers"] == []
            connected = start_worker("-p", str(port), home=home, api_key="")
            connected.wait_for_output(CONNECTED)
        finally:
            hub.terminate()
            hub.wait(10)


def test_revoking_a_client_key_ends_its_running_job_call(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple, tmp_path: Path
) -> None:
    import threading

    import remote_models

    _, key = client.create_key("client", "short-lived")
    _, data = iris
    marker = tmp_path / "started"
    errors: list[BaseException] = []

    def submit() -> None:
        with HubClient(hub.address, api_key=key) as platform:
            try:
                platform.predict(remote_models.SlowModel(marker, 5), data)
            except AuthenticationError as exc:
                errors.append(exc)

    job = threading.Thread(target=submit)
    job.start()
    wait_until(marker.exists, 10, "the job to start")
    client.revoke_key("short-lived")
    job.join(10)
    assert errors and "the API key was revoked" in str(errors[0])


def test_zero_config_with_no_flags_at_all(tmp_path: Path) -> None:
    """`giskard hub start` and `giskard worker start`, same user, defaults everywhere."""
    env = {**os.environ, "GISKARD_HOME": str(tmp_path / "home"), "GISKARD_API_KEY": ""}
    hub_log, worker_log = tmp_path / "hub.log", tmp_path / "worker.log"
    with (
        hub_log.open("wb") as log,
        subprocess.Popen(giskard_command("hub", "start"), stderr=log, env=env) as hub,
    ):
        try:
            wait_until(lambda: "Hub listening on 127.0.0.1:40051" in hub_log.read_text(), 10, "hub")
            with (
                worker_log.open("wb") as out,
                subprocess.Popen(giskard_command("worker", "start"), stderr=out, env=env) as worker,
            ):
                try:
                    wait_until(lambda: CONNECTED in worker_log.read_text(), 10, "the worker")
                finally:
                    worker.terminate()
                    worker.wait(30)
        finally:
            hub.terminate()
            hub.wait(10)


def test_the_local_admin_key_never_goes_to_another_users_hub_on_the_port(
    tmp_path: Path, start_worker: Callable[..., WorkerProcess], caplog: pytest.LogCaptureFixture
) -> None:
    """Our hub is down and someone else listens on its port: the worker must not hand them
    the local admin key (it only talks to the hub behind our private Unix socket)."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    with Hub(port=0, home=ours) as our_hub:
        port = our_hub.port
    caplog.set_level(logging.INFO)
    with Hub(port=port, home=theirs) as impostor:
        worker = start_worker("-p", str(port), home=ours, api_key="")
        worker.wait_for_output("no hub of this user listens there", count=2)
        with HubClient(impostor.address, api_key=impostor.admin_key) as theirs_client:
            assert theirs_client.workers() == []
    assert not any("open a worker session" in r.getMessage() for r in caplog.records)
    with Hub(port=port, home=ours):
        worker.wait_for_output(CONNECTED, timeout_s=10)


def test_a_fatal_error_can_exit_zero_for_launchd(hub: Hub, tmp_path: Path) -> None:
    env = {**os.environ, "GISKARD_API_KEY": "gsk_0_wrong", "GISKARD_FATAL_EXIT_CODE": "0"}
    env["GISKARD_HOME"] = str(tmp_path)
    result = subprocess.run(
        giskard_command("worker", "start", "-h", "127.0.0.1", "-p", str(hub.port)),
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 0
    assert "refused this worker: unknown API key" in result.stderr


class _PortListener:
    """Whoever holds a hub's port while the hub is down: records every byte sent to it."""

    def __init__(self, port: int) -> None:
        self.connections = 0
        self.received = b""
        self._server = socket.create_server(("127.0.0.1", port))
        self._server.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                peer, _ = self._server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with peer:
                peer.settimeout(1.0)
                with contextlib.suppress(OSError):
                    while chunk := peer.recv(65536):
                        self.received += chunk

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._server.close()


@pytest.mark.parametrize(
    "command",
    [
        ["hub", "workers"],
        ["hub", "keys", "list"],
        ["hub", "keys", "create", "--role", "client"],
        ["hub", "keys", "revoke", "somebody"],
    ],
)
def test_the_hub_commands_never_send_the_local_admin_key_over_tcp(
    command: list[str], tmp_path: Path
) -> None:
    """Our hub is down and a stranger listens on its port: a command that found the local
    admin key must only try the private socket, and so send the stranger nothing."""
    home = tmp_path / "home"
    with Hub(port=0, home=home) as hub:
        port, admin_key = hub.port, hub.admin_key
    stranger = _PortListener(port)
    try:
        result = subprocess.run(
            giskard_command(*command, "-h", "127.0.0.1", "-p", str(port)),
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "GISKARD_HOME": str(home), "GISKARD_API_KEY": ""},
        )
    finally:
        stranger.close()
    assert admin_key.encode() not in stranger.received
    assert stranger.connections == 0
    assert result.returncode == 1
    assert "no hub of this user listens there" in result.stderr
    assert "Traceback" not in result.stderr


def _worker_start_error(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        giskard_command("worker", "start", "-h", "127.0.0.1", "-p", str(free_port()), *args),
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )


def test_a_blank_api_key_in_the_environment_is_called_blank(tmp_path: Path) -> None:
    result = _worker_start_error({"GISKARD_HOME": str(tmp_path), "GISKARD_API_KEY": " \t "})
    assert result.returncode == ExitCode.CONFIG
    assert result.stderr.strip().splitlines() == [
        "giskard: error: $GISKARD_API_KEY is blank (only white space): give the key itself"
    ]


@pytest.mark.parametrize("which", ["--api-key-file", "admin.key"])
def test_a_key_file_that_is_not_text_is_a_fatal_one_line_error(which: str, tmp_path: Path) -> None:
    from giskard.credentials import local_admin_key_path

    key_file = (
        tmp_path / "given.key" if which == "--api-key-file" else local_admin_key_path(tmp_path)
    )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_bytes(b"gsk_\xff\xfe_garbage\n")
    args = ["--api-key-file", str(key_file)] if which == "--api-key-file" else []
    result = _worker_start_error({"GISKARD_HOME": str(tmp_path), "GISKARD_API_KEY": ""}, *args)
    assert result.returncode == ExitCode.CONFIG
    assert result.stderr.strip().splitlines() == [
        f"giskard: error: the API key file {key_file} is not text:"
        " byte 0xff at offset 4 is not UTF-8"
    ]
