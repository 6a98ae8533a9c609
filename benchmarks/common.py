"""Timing, polling and process helpers shared by the benchmark modules."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """How hard to push; `quick()` is a smoke run."""

    latency_calls: int = 2000
    latency_warmup: int = 100
    pipelined_calls: int = 5000
    pipelined_calls_dask: int = 2000
    pipelined_threads: int = 32
    big_rows: int = 1_000_000
    big_repeats: int = 5
    big_warmup: int = 1
    cli_runs: int = 7
    worker_starts: int = 3
    memory_frame_bytes: int = 1024**3  # the frame whose cold predict the peak RSS rows watch
    link_rows: int = 1_000_000
    link_repeats: int = 3
    deadline_s: float = 180.0  # per giskard measurement: a hang shows as an error, not forever

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            latency_calls=200,
            latency_warmup=20,
            pipelined_calls=500,
            pipelined_calls_dask=200,
            big_repeats=1,
            big_warmup=0,
            cli_runs=3,
            worker_starts=1,
            memory_frame_bytes=256 * 1024**2,
            link_rows=250_000,
            link_repeats=1,
            deadline_s=90.0,
        )


@dataclass
class Latency:
    """Percentiles of a series of wall-clock durations, in milliseconds."""

    p50_ms: float
    p99_ms: float
    mean_ms: float
    calls: int

    @classmethod
    def of(cls, durations_ns: list[int]) -> Latency:
        ordered = sorted(durations_ns)
        return cls(
            p50_ms=_percentile(ordered, 50) / 1e6,
            p99_ms=_percentile(ordered, 99) / 1e6,
            mean_ms=sum(ordered) / len(ordered) / 1e6,
            calls=len(ordered),
        )


def _percentile(ordered: list[int], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def time_calls(call: Callable[[], object], calls: int, warmup: int) -> Latency:
    """Call `call` `warmup` times untimed, then `calls` times, each timed on its own."""
    for _ in range(warmup):
        call()
    durations = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        began = clock()
        call()
        durations.append(clock() - began)
    return Latency.of(durations)


def pipelined_rate(call: Callable[[], object], calls: int, threads: int) -> float:
    """Jobs per second when `threads` threads issue `calls` blocking calls in all."""
    with ThreadPoolExecutor(threads, thread_name_prefix="bench") as pool:
        # Warm every thread's path once, untimed.
        for future in [pool.submit(call) for _ in range(threads)]:
            future.result()
        began = time.perf_counter()
        futures = [pool.submit(call) for _ in range(calls)]
        for future in futures:
            future.result()
        return calls / (time.perf_counter() - began)


def repeated(
    settings: Settings, prepare: Callable[[], Any], run: Callable[[Any], object]
) -> dict[str, Any]:
    """Median of `settings.big_repeats` timed `run(prepare())` (only `run` is timed), after
    `settings.big_warmup` untimed ones: the first call's one-off costs are not the data's."""
    durations = []
    for attempt in range(settings.big_warmup + settings.big_repeats):
        argument = prepare()
        began = time.perf_counter()
        run(argument)
        if attempt >= settings.big_warmup:
            durations.append(time.perf_counter() - began)
        del argument
    return {"value": statistics.median(durations), "runs_s": durations}


def all_results(futures: list[Any]) -> list[Any]:
    """Each future's result, in order; on the first failure the others are cancelled, so
    that they do not load the next measurement."""
    try:
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            with contextlib.suppress(Exception):
                future.cancel()
        raise


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> Any:
    """Poll `predicate` until it returns something truthy; raise after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.01)


def with_deadline(function: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """`function()`, run in a daemon thread so that a hang becomes an error after `timeout_s`."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"bench-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"{what} took more than {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def python_command(*args: str) -> list[str]:
    return [sys.executable, *args]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for benchmark subprocesses: the project root importable."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    return env


@dataclass
class LoggedProcess:
    """A subprocess whose stderr a thread drains, noting when given lines first appear."""

    process: subprocess.Popen[bytes]
    started_at: float
    lines: list[str] = field(default_factory=list)
    seen: dict[str, float] = field(default_factory=dict)
    _watch: tuple[str, ...] = ()
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None

    @classmethod
    def spawn(
        cls, command: list[str], env: dict[str, str], watch: tuple[str, ...]
    ) -> LoggedProcess:
        started_at = time.perf_counter()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=PROJECT_ROOT,
        )
        logged = cls(process, started_at, _watch=watch)
        logged._reader = threading.Thread(target=logged._drain, daemon=True)
        logged._reader.start()
        return logged

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            now = time.perf_counter()
            line = raw.decode(errors="replace").rstrip()
            with self._cond:
                if len(self.lines) < 10_000:
                    self.lines.append(line)
                for text in self._watch:
                    if text in line and text not in self.seen:
                        self.seen[text] = now
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, text: str, timeout_s: float) -> float:
        """Seconds from spawn to the first stderr line containing `text`."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while text not in self.seen:
                if self.process.poll() is not None and text not in self.seen:
                    raise RuntimeError(
                        f"exited with code {self.process.returncode} before {text!r}: "
                        f"{self.last_line()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no {text!r} after {timeout_s:g} s; last line: {self.last_line()}"
                    )
                self._cond.wait(min(left, 0.05))
            return self.seen[text] - self.started_at

    def last_line(self) -> str:
        return next((line for line in reversed(self.lines) if line.strip()), "(no output)")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`; also any child it leaves behind."""
        stop_tree(self.process, timeout_s)
        if self._reader is not None:
            self._reader.join(5)


def stop_tree(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Stop `process` with SIGTERM (SIGKILL after `timeout_s`), then its leftover children."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=5)


def one_line(exc: BaseException) -> str:
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):  # a grpc.RpcError: its str() is many lines
        with contextlib.suppress(Exception):
            return f"{type(exc).__name__}: {code().name}: {details()}"
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
