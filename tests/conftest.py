"""Fixtures that start real parts: an in-process hub on a free port, worker subprocesses."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from giskard.client import HubClient
from giskard.hub import Hub

CONNECTED = "Connected to Giskard server."


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> object:
    """Poll `predicate` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


class PipeLines:
    """The lines of a subprocess's text pipe, read by a thread, so that a test waits for each
    with a deadline: a bare `readline()` on a pipe blocks for as long as nothing comes."""

    def __init__(self, pipe: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._lines.put(line)
        self._lines.put(None)

    def next(self, timeout_s: float) -> str:
        """The next line; fails after `timeout_s`, or when the pipe closes first."""
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout_s} s") from None
        if line is None:
            raise AssertionError("the pipe closed")
        return line

    def rest(self, timeout_s: float) -> list[str]:
        """Every line until the pipe closes; fails if it is still open after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        lines = []
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise AssertionError(f"the pipe is still open after {timeout_s} s") from None
            if line is None:
                return lines
            lines.append(line)

    def wait_for(self, text: str, timeout_s: float) -> str:
        """Skip lines up to the first that contains `text`; fails after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while text not in (line := self.next(max(deadline - time.monotonic(), 0.0))):
            pass
        return line


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    stderr_path: Path
    home: Path

    @property
    def output(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout_s: float = 10.0, count: int = 1) -> None:
        def seen() -> bool:
            if self.process.poll() is not None and self.output.count(text) < count:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.output}")
            return self.output.count(text) >= count

        wait_until(seen, timeout_s, f"{text!r} x{count} in the worker's output")

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)


@pytest.fixture(scope="session", autouse=True)
def _giskard_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One GISKARD_HOME for the session's hubs (and so one local admin key), never ~."""
    home = tmp_path_factory.mktemp("giskard-home")
    previous = os.environ.get("GISKARD_HOME")
    os.environ["GISKARD_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("GISKARD_HOME", None)
    else:
        os.environ["GISKARD_HOME"] = previous


def local_admin_key() -> str | None:
    """The admin key the session's hubs share, once a hub has started."""
    from giskard.credentials import local_admin_key_path

    path = local_admin_key_path()
    return path.read_text().strip() if path.exists() else None


def giskard_command(*args: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "giskard.cli", *args]


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `giskard worker start ARGS` as a subprocess with its own GISKARD_HOME."""
    started: list[WorkerProcess] = []

    def start(
        *args: str,
        home: Path | None = None,
        api_key: str | None = None,
        python: str = sys.executable,
        argv: list[str] | None = None,
    ) -> WorkerProcess:
        """A worker with its own GISKARD_HOME, run by `python`; it presents `api_key`, by
        default the key of the session's hubs (its own home has none). `argv`: another
        command than `giskard worker start ARGS` (see worker_main.py)."""
        home = home or tmp_path / f"home-{len(started)}"
        home.mkdir(parents=True, exist_ok=True)
        stderr_path = tmp_path / f"worker-{len(started)}.stderr"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                argv or giskard_command("worker", "start", *args, python=python),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, "GISKARD_HOME": str(home), **_key_env(api_key)},
            )
        worker = WorkerProcess(process, stderr_path, home)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)


def _key_env(api_key: str | None) -> dict[str, str]:
    """ "" means no key at all; None, the session hubs' key."""
    key = local_admin_key() if api_key is None else api_key
    return {"GISKARD_API_KEY": key or ""}


@pytest.fixture
def hub(request: pytest.FixtureRequest) -> Iterator[Hub]:
    """A hub on a free port; a test may give it settings with
    `@pytest.mark.parametrize("hub", [{...}], indirect=True)`."""
    with Hub(port=0, **getattr(request, "param", {})) as running:
        yield running


@pytest.fixture
def client(hub: Hub) -> Iterator[HubClient]:
    with HubClient(hub.address) as connected:
        yield connected


@pytest.fixture
def browser() -> Iterator[object]:
    """Debian's headless Chromium, driven through Selenium (the console's browser tests)."""
    from console_browser import chromium  # Selenium: only the browser tests load it

    with chromium() as driver:
        yield driver


@pytest.fixture
def connected_worker(hub: Hub, start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port))
    worker.wait_for_output(CONNECTED)
    return worker


@pytest.fixture(scope="session", autouse=True)
def _pickle_test_models_by_value() -> None:
    import cloudpickle
    import remote_models

    cloudpickle.register_pickle_by_value(remote_models)


def _fitted_pipeline(loader: Callable[..., object]) -> tuple[object, object]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = loader(as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(frame.data, frame.target)
    return model, frame.data


@pytest.fixture(scope="session")
def iris() -> tuple[object, object]:
    """A fitted scikit-learn pipeline and the iris features (DataFrame)."""
    from sklearn.datasets import load_iris

    return _fitted_pipeline(load_iris)


@pytest.fixture(scope="session")
def breast_cancer() -> tuple[object, object]:
    from sklearn.datasets import load_breast_cancer

    return _fitted_pipeline(load_breast_cancer)
