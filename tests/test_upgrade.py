"""`giskard worker upgrade` against a real systemd user manager (see service_user.py): the
service's own environment gets the new version and runs it; a failed install leaves the
version it ran, running."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import free_port, wait_until
from service_user import ROOT, ServiceUser, install_project, session_fixtures

from giskard import __version__
from giskard.client import HubClient
from giskard.hub import Hub

NEW_VERSION = f"{__version__}.post1"
MISSING_WHEEL = "/nonexistent/giskard_worker-99.0.0-py3-none-any.whl"


user, clean = session_fixtures()


@pytest.fixture
def new_wheel(tmp_path_factory: pytest.TempPathFactory, user: ServiceUser) -> Iterator[Path]:
    """A wheel of this checkout whose version is NEW_VERSION; the user's venv gets this
    checkout back afterwards."""
    yield from wheel_of_this_checkout(tmp_path_factory, user)


@pytest.fixture
def broken_wheel(tmp_path_factory: pytest.TempPathFactory, user: ServiceUser) -> Iterator[Path]:
    """The same, but its worker exits at once: it installs, and its service cannot start."""
    yield from wheel_of_this_checkout(tmp_path_factory, user, broken=True)


def wheel_of_this_checkout(
    tmp_path_factory: pytest.TempPathFactory, user: ServiceUser, *, broken: bool = False
) -> Iterator[Path]:
    tree = tmp_path_factory.mktemp("tree")
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    for name in listed.stdout.splitlines():
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    init = tree / "src" / "giskard" / "__init__.py"
    init.write_text(
        re.sub(r'__version__ = ".*"', f'__version__ = "{NEW_VERSION}"', init.read_text())
    )
    if broken:
        worker_cli = tree / "src" / "giskard" / "cli" / "worker.py"
        worker_cli.write_text(worker_cli.read_text() + "\nraise SystemExit('broken')\n")
    wheels = Path(tempfile.mkdtemp(prefix="giskard-upgrade-"))
    wheels.chmod(0o755)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(tree)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("*.whl")
    wheel.chmod(0o644)
    try:
        yield wheel
    finally:
        shutil.rmtree(wheels)
        (user.venv / ".giskard-wheel").unlink(missing_ok=True)  # reinstall this checkout
        install_project(user)


def versions(client: HubClient) -> list[str]:
    return [worker["giskard_version"] for worker in client.workers()]


def failed_upgrade(user: ServiceUser, args: tuple[str, ...]) -> str:
    """`upgrade` to a wheel that does not exist: its one error line."""
    result = user.giskard("worker", "upgrade", *args, "--requirement", MISSING_WHEEL)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"giskard: error: pip could not install {MISSING_WHEEL}: ")
    return line


def test_upgrade_installs_the_new_version_in_the_services_environment_and_runs_it(
    user: ServiceUser, new_wheel: Path
) -> None:
    with Hub(host="127.0.0.1", port=free_port()) as hub, HubClient(hub.address) as client:
        args = ("-h", "127.0.0.1", "-p", str(hub.port))
        name = f"giskard-worker-localhost-{hub.port}"
        assert user.giskard("worker", "start", "-d", *args).returncode == 0
        wait_until(lambda: versions(client) == [__version__], 15, "the worker to connect")
        result = user.giskard(
            "worker", "upgrade", *args, "--requirement", str(new_wheel), timeout_s=600
        )
        assert result.returncode == 0, result.stderr
        assert f"Upgraded {name}: {__version__} -> {NEW_VERSION}." in result.stdout
        assert user.show(name, "ActiveState") == "active"
        wait_until(lambda: versions(client) == [NEW_VERSION], 30, "the new version to connect")


def test_a_failed_upgrade_leaves_the_old_version_running(user: ServiceUser) -> None:
    with Hub(host="127.0.0.1", port=free_port()) as hub, HubClient(hub.address) as client:
        args = ("-h", "127.0.0.1", "-p", str(hub.port))
        name = f"giskard-worker-localhost-{hub.port}"
        assert user.giskard("worker", "start", "-d", *args).returncode == 0
        [before] = wait_until(client.workers, 15, "the worker to connect")
        line = failed_upgrade(user, args)
        assert line.endswith(f"({name} runs giskard-worker {__version__} again)")
        assert user.show(name, "ActiveState") == "active"

        def back() -> bool:
            workers = client.workers()
            return [(w["giskard_version"], w["pid"] != before["pid"]) for w in workers] == [
                (__version__, True)
            ]

        wait_until(back, 30, "the same version, restarted, to connect again")


def test_a_service_that_cannot_start_again_after_pip_says_both(
    user: ServiceUser, broken_wheel: Path
) -> None:
    args = ("-h", "127.0.0.1", "-p", str(free_port()))  # no hub: the worker waits
    name = f"giskard-worker-localhost-{args[-1]}"
    assert user.giskard("worker", "start", "-d", *args).returncode == 0
    result = user.giskard(
        "worker", "upgrade", *args, "--requirement", str(broken_wheel), timeout_s=600
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"giskard: error: pip installed {broken_wheel}, but the service ")
    assert f"{name} failed to restart" in line


@contextlib.contextmanager
def package_index(on_request: Callable[[], None]) -> Iterator[str]:
    """A URL pip downloads a wheel from: it calls `on_request` while pip waits for the
    answer, then answers 404. What `on_request` raises fails the test when the block ends,
    rather than being printed by the server's thread and lost."""
    errors: list[BaseException] = []

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server calls it by this name
            try:
                on_request()
            except Exception as exc:
                errors.append(exc)
            self.send_error(404)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/giskard_worker-99.0-py3-none-any.whl"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    if errors:
        raise errors[0]


def running_services(user: ServiceUser) -> list[str]:
    rows = json.loads(user.giskard("worker", "status", "--json").stdout)
    return [row["backend"] for row in rows if row["state"] == "running"]


@pytest.mark.parametrize("backend", ["systemd", "process"])
def test_upgrade_stops_the_worker_while_pip_runs(user: ServiceUser, backend: str) -> None:
    args = ("-h", "127.0.0.1", "-p", str(free_port()))  # no hub: the worker waits
    started = user.giskard("worker", "start", "-d", "--backend", backend, *args)
    assert started.returncode == 0, started.stderr
    assert running_services(user) == [backend]
    during_pip: list[list[str]] = []
    with package_index(lambda: during_pip.append(running_services(user))) as wheel_url:
        # pip must reach this loopback server directly, not through a configured proxy.
        direct = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        result = user.giskard("worker", "upgrade", *args, "--requirement", wheel_url, env=direct)
    assert result.returncode == 1
    assert "giskard: error: pip could not install" in result.stderr
    assert during_pip and all(running == [] for running in during_pip)
    assert running_services(user) == [backend]


def test_a_failed_upgrade_of_a_detached_process_leaves_it_running(user: ServiceUser) -> None:
    args = ("-h", "127.0.0.1", "-p", str(free_port()))  # no hub: the worker waits
    started = user.giskard("worker", "start", "-d", "--backend", "process", *args)
    assert started.returncode == 0, started.stderr
    result = user.giskard("worker", "upgrade", *args, "--requirement", MISSING_WHEEL)
    assert result.returncode == 1
    assert "giskard: error: pip could not install" in result.stderr
    status = user.giskard("worker", "status", "--json").stdout
    assert '"backend": "process"' in status and '"state": "running"' in status


def test_upgrade_without_a_service_says_so_and_does_nothing(user: ServiceUser) -> None:
    port = str(free_port())
    result = user.giskard("worker", "upgrade", "-p", port, "--requirement", MISSING_WHEEL)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"giskard: error: no worker service for localhost:{port} (see `giskard worker status`)"
    )


def test_upgrade_leaves_a_stopped_service_stopped(user: ServiceUser) -> None:
    """The administrator stopped it: an upgrade is no reason to start it."""
    args = ("-h", "127.0.0.1", "-p", str(free_port()))  # no hub: the worker waits
    name = f"giskard-worker-localhost-{args[-1]}"
    assert user.giskard("worker", "start", "-d", *args).returncode == 0
    assert user.systemctl("stop", name).returncode == 0
    assert failed_upgrade(user, args).endswith(f"({name} stays stopped)")
    assert user.show(name, "ActiveState") == "inactive"
