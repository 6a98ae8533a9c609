"""giskard itself: a hub subprocess, a real worker subprocess, HubClient in this process."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks.common import (
    Latency,
    LoggedProcess,
    Settings,
    all_results,
    child_env,
    free_port,
    pipelined_rate,
    python_command,
    repeated,
    time_calls,
    wait_until,
)
from benchmarks.workload import TRIVIAL, FreshFrames, Workload

CONNECTED = "Connected to Giskard server."
HUB_LISTENING = "Hub listening on"
MIB = 1024 * 1024
JOB_TIMEOUT_S = 300.0


class NotAvailable(Exception):
    """The measurement cannot be made with this version of giskard (shown as n/a)."""


@contextmanager
def giskard_home(home: Path) -> Iterator[None]:
    """GISKARD_HOME for this process (HubClient finds the hub's local admin key there)."""
    saved = {name: os.environ.get(name) for name in ("GISKARD_HOME", "GISKARD_API_KEY")}
    os.environ["GISKARD_HOME"] = str(home)
    os.environ.pop("GISKARD_API_KEY", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = child_env(GISKARD_HOME=str(home), **extra)
    if "GISKARD_API_KEY" not in extra:
        env.pop("GISKARD_API_KEY", None)
    return env


def start_hub(
    home: Path, *, host: str = "127.0.0.1", port: int = 0, wrap: tuple[str, ...] = ()
) -> tuple[LoggedProcess, int]:
    """`giskard hub start -h HOST -p PORT` (a free port by default); returns once it listens.
    `wrap` prefixes the command (`ip netns exec NS`); off loopback the hub is plaintext
    (`--insecure`), as on a private link."""
    port = port or free_port()
    command = ["hub", "start", "-h", host, "-p", str(port), *_insecure(host)]
    hub = LoggedProcess.spawn(
        [*wrap, *python_command("-m", "giskard.cli", *command)], _env(home), watch=(HUB_LISTENING,)
    )

    def ready() -> bool:
        if HUB_LISTENING in hub.seen:
            return True
        if hub.process.poll() is not None:
            raise RuntimeError(f"the hub exited ({hub.process.returncode}): {hub.last_line()}")
        # Listening, even if its log line changed (only here: in a namespace, it is elsewhere).
        return not wrap and host == "127.0.0.1" and _accepts(port)

    try:
        wait_until(ready, 30, "the hub to listen")
    except BaseException:
        hub.stop()
        raise
    return hub, port


def _insecure(host: str) -> list[str]:
    return [] if host == "127.0.0.1" else ["--insecure"]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def start_worker(
    home: Path,
    port: int,
    *,
    host: str = "127.0.0.1",
    wrap: tuple[str, ...] = (),
    api_key: str | None = None,
) -> LoggedProcess:
    """`giskard worker start -h HOST -p PORT`; `api_key` goes in its environment (never argv);
    without it, the worker finds the local hub's admin key in `home`."""
    command = ["worker", "start", "-h", host, "-p", str(port), *_insecure(host)]
    env = _env(home, GISKARD_API_KEY=api_key) if api_key else _env(home)
    return LoggedProcess.spawn(
        [*wrap, *python_command("-m", "giskard.cli", *command)], env, watch=(CONNECTED,)
    )


def connected_worker(home: Path, port: int, **where: Any) -> LoggedProcess:
    """A worker (see `start_worker` for `where`), once it says it is connected."""
    worker = start_worker(home, port, **where)
    try:
        worker.wait_for(CONNECTED, 60)
    except BaseException:
        worker.stop()
        raise
    return worker


def cli_help_ms(settings: Settings) -> dict[str, Any]:
    """Median wall time of `giskard --help` (the venv's console script)."""
    script = Path(sys.executable).with_name("giskard")
    command = [str(script), "--help"]
    if not script.exists():
        command = python_command("-m", "giskard.cli", "--help")
    runs = []
    for attempt in range(settings.cli_runs + 1):
        began = time.perf_counter()
        code = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
        elapsed = time.perf_counter() - began
        if code != 0:
            raise RuntimeError(f"giskard --help exited with {code}")
        if attempt:  # the first run only warms the disk cache
            runs.append(elapsed * 1000)
    return {"value": statistics.median(runs), "runs_ms": runs}


def worker_connect_s(home: Path, port: int, settings: Settings) -> dict[str, Any]:
    """Median time from Popen to "Connected to Giskard server." on the worker's stderr."""
    runs = []
    for _ in range(settings.worker_starts):
        worker = start_worker(home, port)
        try:
            runs.append(worker.wait_for(CONNECTED, 60))
        finally:
            worker.stop()
    return {"value": statistics.median(runs), "runs_s": runs}


def rss_mib(pid: int) -> tuple[float, float, int]:
    """RSS of the process alone, of it and its descendants (MiB), and how many descendants."""
    process = psutil.Process(pid)
    own = process.memory_info().rss
    children = process.children(recursive=True)
    total = own
    for child in children:
        with suppress(psutil.Error):
            total += child.memory_info().rss
    return own / MIB, total / MIB, len(children)


def problems(process: LoggedProcess | None, limit: int = 3) -> list[str]:
    """The last few warnings and errors in a hub's or worker's log."""
    if process is None:
        return []
    found = [line for line in process.lines if " WARNING " in line or " ERROR " in line]
    return found[-limit:]


def wait_for_active_worker(client: Any, timeout_s: float = 30) -> None:
    wait_until(lambda: any(w.get("active") for w in client.workers()), timeout_s, "active worker")


def stored_model(client: Any, work: Workload) -> Any:
    """The model uploaded once, as Ray's `ray.put(model)` and Dask's scattered model."""
    return client.put(work.model) if callable(getattr(client, "put", None)) else work.model


def predict_latency(client: Any, work: Workload, settings: Settings, stored: bool) -> Latency:
    """1-row predicts, the model stored once with `HubClient.put` or passed each time (then
    the client pickles and hashes it per call, and the worker finds it in its cache)."""
    expected = work.model.predict(work.row)
    model = stored_model(client, work) if stored else work.model
    got = client.predict(model, work.row, wait_for_worker_s=30, timeout_s=JOB_TIMEOUT_S)
    if not np.array_equal(np.asarray(got), expected):
        raise RuntimeError(f"remote prediction {got!r} differs from local {expected!r}")
    return time_calls(
        lambda: client.predict(model, work.row, timeout_s=JOB_TIMEOUT_S),
        settings.latency_calls,
        settings.latency_warmup,
    )


def trivial_rate(client: Any, settings: Settings) -> dict[str, Any]:
    """Jobs/s of `operator.add(1, 2)`: `submit` if HubClient has it, else `call` from threads."""
    fn, *args = TRIVIAL
    n = settings.pipelined_calls
    if callable(getattr(client, "submit", None)):
        # All in flight at once, as Dask's client.map and Ray's list of .remote() calls.
        for future in [client.submit(fn, *args) for _ in range(settings.pipelined_threads)]:
            future.result()
        began = time.perf_counter()
        futures = [client.submit(fn, *args) for _ in range(n)]
        results = all_results(futures)
        rate = n / (time.perf_counter() - began)
        via = "HubClient.submit, all in flight"
    elif callable(getattr(client, "call", None)):
        first = client.call(fn, *args)
        if first != fn(*args):
            raise RuntimeError(f"HubClient.call returned {first!r}, expected {fn(*args)!r}")
        rate = pipelined_rate(lambda: client.call(fn, *args), n, settings.pipelined_threads)
        results = None
        via = f"HubClient.call from {settings.pipelined_threads} threads"
    else:
        raise NotAvailable("HubClient.call missing")
    if results is not None and any(r != fn(*args) for r in results):
        raise RuntimeError("HubClient.submit returned a wrong result")
    return {"value": rate, "calls": n, "via": via}


def threaded_call_rate(client: Any, settings: Settings) -> dict[str, Any]:
    """Jobs/s of `operator.add(1, 2)` with blocking `HubClient.call`s from a thread pool."""
    fn, *args = TRIVIAL
    if not callable(getattr(client, "call", None)):
        raise NotAvailable("HubClient.call missing")
    threads = settings.pipelined_threads
    rate = pipelined_rate(lambda: client.call(fn, *args), settings.pipelined_calls, threads)
    return {"value": rate, "calls": settings.pipelined_calls, "threads": threads}


def big_cold_s(client: Any, work: Workload, frames: FreshFrames, settings: Settings) -> dict:
    """A frame the hub and the worker have never seen, each repeat (made outside the timing)."""
    model = stored_model(client, work)
    return repeated(
        settings,
        frames,
        lambda frame: _check_big(client.predict(model, frame, timeout_s=JOB_TIMEOUT_S), frame),
    )


def big_warm_s(client: Any, work: Workload, frames: FreshFrames, settings: Settings) -> dict:
    """The same frame again, stored once with `HubClient.put` (as Ray's ObjectRef and Dask's
    scattered future): it is already on the hub and in the worker's cache."""
    model = stored_model(client, work)
    expected = work.model.predict(frames.base)
    frame = client.put(frames.base) if callable(getattr(client, "put", None)) else frames.base
    got = client.predict(model, frame, timeout_s=JOB_TIMEOUT_S)
    if not np.array_equal(np.asarray(got), expected):
        raise RuntimeError("remote predictions on the 1M-row frame differ from local ones")
    return repeated(
        settings, lambda: frame, lambda f: client.predict(model, f, timeout_s=JOB_TIMEOUT_S)
    )


def _check_big(result: Any, frame: Any) -> None:
    if len(result) != len(frame):
        raise RuntimeError(f"{len(result)} predictions for {len(frame)} rows")
