"""A worker's identity is (hub, environment): every executable of one environment and every
loopback spelling of one hub are one worker and one service; names on disk stay short."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import CONNECTED, local_admin_key, wait_until

from giskard.hub import Hub

VENV = Path(sys.prefix)
PYTHON = VENV / "bin" / "python"
BACKEND = ("--backend", "process")
# A valid DNS name of 253 characters (labels of at most 63) that never resolves.
LONG_HOST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 53, "invalid"])


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """One GISKARD_HOME shared by every process of the test."""
    home = tmp_path / "giskard-home"
    home.mkdir()
    yield home
    subprocess.run(
        command(PYTHON, "worker", "stop", "-a"),
        env=env(home, PYTHON),
        capture_output=True,
        timeout=60,
    )


def command(executable: Path, *args: str) -> list[str]:
    if executable.name == "giskard":  # the console script
        return [str(executable), *args]
    return [str(executable), "-m", "giskard.cli", *args]


def env(home: Path, executable: Path) -> dict[str, str]:
    """As in a shell where the venv was activated by the path `executable` is under."""
    return {
        **os.environ,
        "PATH": f"{executable.parent}{os.pathsep}{os.environ['PATH']}",
        "GISKARD_HOME": str(home),
        "GISKARD_API_KEY": local_admin_key() or "",
    }


def run(
    home: Path, executable: Path, *args: str, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(executable, *args),
        env=env(home, executable),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        stdin=subprocess.DEVNULL,
    )


class Foreground:
    """A foreground worker whose stderr goes to a file (read with a deadline, never a pipe)."""

    def __init__(self, home: Path, executable: Path, *args: str) -> None:
        self.log = home / f"foreground-{os.urandom(4).hex()}.stderr"
        with self.log.open("wb") as stderr:
            self.process = subprocess.Popen(
                command(executable, "worker", "start", *args),
                env=env(home, executable),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 15) -> None:
        def seen() -> bool:
            if self.process.poll() is not None and text not in self.output():
                raise AssertionError(f"worker exited {self.process.returncode}:\n{self.output()}")
            return text in self.output()

        wait_until(seen, timeout_s, f"{text!r} from the worker")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def foreground(home: Path) -> Iterator[type[Foreground]]:
    started: list[Foreground] = []

    def start(executable: Path, *args: str) -> Foreground:
        worker = Foreground(home, executable, *args)
        started.append(worker)
        return worker

    yield start  # type: ignore[misc]
    for worker in started:
        worker.stop()


@pytest.fixture
def linked_venv(tmp_path: Path) -> Path:
    """A symlink to this test's venv: another path to the same environment."""
    link = tmp_path / "link-to-venv"
    link.symlink_to(VENV.resolve(), target_is_directory=True)
    return link


def assert_refused(result: subprocess.CompletedProcess[str], pid: int) -> None:
    assert result.returncode == 78, result.stdout + result.stderr
    assert f"already running: pid {pid}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "second", ["python3", f"python3.{sys.version_info.minor}", "giskard", "linked python3"]
)
def test_every_executable_of_one_environment_is_one_worker(
    home: Path, hub: Hub, foreground, linked_venv: Path, second: str
) -> None:
    args = ("-h", "127.0.0.1", "-p", str(hub.port))
    first = foreground(PYTHON, *args)
    first.wait_for(CONNECTED)
    bin_dir = (linked_venv if second.startswith("linked") else VENV) / "bin"
    result = run(home, bin_dir / second.split()[-1], "worker", "start", *args, timeout_s=20)
    assert_refused(result, first.process.pid)


@pytest.mark.parametrize(
    ("first_host", "second_host"), [("127.0.0.1", "localhost"), ("localhost", "::1")]
)
def test_loopback_spellings_of_one_hub_are_one_worker(
    home: Path, hub: Hub, foreground, first_host: str, second_host: str
) -> None:
    first = foreground(PYTHON, "-h", first_host, "-p", str(hub.port))
    first.wait_for(CONNECTED)
    result = run(
        home,
        VENV / "bin" / "python3",
        "worker",
        "start",
        "-h",
        second_host,
        "-p",
        str(hub.port),
        timeout_s=20,
    )
    assert_refused(result, first.process.pid)


def start_d(home: Path, executable: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(home, executable, "worker", "start", "-d", *args, *BACKEND)


def status(home: Path) -> list[dict]:
    result = run(home, PYTHON, "worker", "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_start_d_from_any_executable_or_spelling_is_one_unchanged_service(
    home: Path, hub: Hub, linked_venv: Path
) -> None:
    port = str(hub.port)
    first = start_d(home, PYTHON, "-h", "127.0.0.1", "-p", port)
    assert first.returncode == 0, first.stderr
    assert "installed and started" in first.stdout
    (service,) = status(home)
    for executable, host in [
        (VENV / "bin" / "python3", "127.0.0.1"),
        (linked_venv / "bin" / "python", "localhost"),
        (PYTHON, "::1"),
    ]:
        again = start_d(home, executable, "-h", host, "-p", port)
        assert again.returncode == 0, again.stderr
        assert "already running, unchanged" in again.stdout, again.stdout
    assert [(s["name"], s["pid"]) for s in status(home)] == [(service["name"], service["pid"])]
    # The service is bound to one canonical executable of the environment.
    assert service["interpreter"] == str(VENV.resolve() / "bin" / "python")
    stopped = run(home, VENV / "bin" / "python3", "worker", "stop", "-h", "localhost", "-p", port)
    assert stopped.returncode == 0 and "Stopped process service" in stopped.stdout
    assert not psutil.pid_exists(service["pid"])


def test_the_default_hub_service_is_giskard_worker_whatever_the_loopback_spelling(
    home: Path,
) -> None:
    with Hub(port=40051):
        started = start_d(home, PYTHON, "-h", "127.0.0.1")
        assert started.returncode == 0, started.stderr
        assert "Service giskard-worker:" in started.stdout
        assert "Stop: giskard worker stop\n" in started.stdout
        stopped = run(home, PYTHON, "worker", "stop")
        assert (
            stopped.returncode == 0 and "Stopped process service giskard-worker." in stopped.stdout
        )


@pytest.fixture
def other_venv(tmp_path: Path) -> Path:
    """Another environment that imports this checkout's packages (no copy, no network)."""
    venv = tmp_path / "other-venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    site_packages = sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"]
    ours = sysconfig.get_paths()["purelib"]
    Path(site_packages, "parent-venv.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return venv


def test_moving_to_another_environment_rebinds_the_service(
    home: Path, hub: Hub, other_venv: Path
) -> None:
    args = ("-h", "127.0.0.1", "-p", str(hub.port))
    assert start_d(home, PYTHON, *args).returncode == 0
    (before,) = status(home)
    moved = start_d(home, other_venv / "bin" / "python3", *args)
    assert moved.returncode == 0, moved.stderr
    assert "rebound to a new interpreter" in moved.stdout
    (after,) = status(home)
    assert after["interpreter"] == str(other_venv.resolve() / "bin" / "python")
    assert after["pid"] != before["pid"] and after["connected"] is True


def test_a_long_host_name_runs_and_retries_in_the_foreground(home: Path, foreground) -> None:
    assert len(LONG_HOST) == 253
    worker = foreground(PYTHON, "-h", LONG_HOST, "--insecure")
    worker.wait_for("Cannot reach the Giskard server", timeout_s=60)
    assert worker.process.poll() is None
    assert "OSError" not in worker.output() and "Traceback" not in worker.output()
    assert all(len(p.name) < 200 for p in home.rglob("*"))


def test_a_long_host_name_runs_as_a_service_and_stop_finds_it(home: Path) -> None:
    started = start_d(home, PYTHON, "-h", LONG_HOST, "--insecure")
    assert started.returncode == 0, started.stdout + started.stderr
    (service,) = status(home)
    assert service["state"] == "running"
    log = home / "run" / "ml-worker.log"
    wait_until(lambda: "Cannot reach the Giskard server" in log.read_text(), 60, "a retry warning")
    assert "OSError" not in log.read_text()
    assert all(len(p.name) < 200 for p in home.rglob("*"))
    stopped = run(home, PYTHON, "worker", "stop", "-h", LONG_HOST)
    assert stopped.returncode == 0 and "Stopped process service" in stopped.stdout, stopped.stdout
    assert not psutil.pid_exists(service["pid"])
    assert status(home) == []
