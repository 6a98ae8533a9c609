"""Peak memory of the hub, the worker and its executor while they predict on a big frame.

A fresh hub and worker, so that each process's high-water mark (VmHWM) covers this predict
and nothing before it but their start.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from benchmarks.bench_giskard import (
    JOB_TIMEOUT_S,
    MIB,
    connected_worker,
    giskard_home,
    start_hub,
    wait_for_active_worker,
)
from benchmarks.common import Settings
from benchmarks.workload import Workload

MEASURES = ("mem_frame", "mem_hub", "mem_worker", "mem_executor", "mem_worker_tree")
SAMPLE_EVERY_S = 0.02


def peak_rss(work: Workload, settings: Settings) -> dict[str, Any]:
    """MiB: the frame, then the peak RSS of each process during one cold predict of it."""
    from giskard.client import HubClient

    frame = work.big_frame(settings.memory_frame_bytes // (8 * len(work.features.columns)))
    frame_bytes = frame.memory_usage(index=False).sum()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp, giskard_home(Path(tmp)):
        hub, port = start_hub(Path(tmp))
        worker = None
        try:
            worker = connected_worker(Path(tmp), port)
            with HubClient(f"127.0.0.1:{port}") as client:
                wait_for_active_worker(client)
                model = client.put(work.model)
                client.predict(model, work.row, timeout_s=JOB_TIMEOUT_S)  # executor up, model in
                with _watching(hub.process.pid, worker.process.pid) as peaks:
                    got = client.predict(model, frame, timeout_s=JOB_TIMEOUT_S)
            if len(got) != len(frame):
                raise RuntimeError(f"{len(got)} predictions for {len(frame)} rows")
        finally:
            if worker is not None:
                worker.stop()
            hub.stop()
    return {
        "mem_frame": frame_bytes / MIB,
        **{key: value / MIB for key, value in peaks.items()},
        "rows": len(frame),
    }


@contextlib.contextmanager
def _watching(hub_pid: int, worker_pid: int) -> Iterator[dict[str, int]]:
    """Peaks in bytes, filled in when the block ends: each process's own high-water mark
    (an executor's is read while it lives, as one may be replaced), and the largest sum of
    the worker's and its children's RSS seen in samples."""
    peaks = {"mem_hub": 0, "mem_worker": 0, "mem_executor": 0, "mem_worker_tree": 0}
    done = threading.Event()

    def sample() -> None:
        worker = psutil.Process(worker_pid)
        while True:
            tree = _status(worker_pid, "VmRSS:")
            for child in _children(worker):
                peaks["mem_executor"] = max(peaks["mem_executor"], _status(child, "VmHWM:"))
                tree += _status(child, "VmRSS:")
            peaks["mem_worker_tree"] = max(peaks["mem_worker_tree"], tree)
            if done.wait(SAMPLE_EVERY_S):
                return

    sampler = threading.Thread(target=sample, name="bench-memory", daemon=True)
    sampler.start()
    try:
        yield peaks
    finally:
        done.set()
        sampler.join(10)
        peaks["mem_hub"] = _status(hub_pid, "VmHWM:")
        peaks["mem_worker"] = _status(worker_pid, "VmHWM:")


def _children(process: psutil.Process) -> list[int]:
    try:
        return [child.pid for child in process.children(recursive=True)]
    except psutil.Error:
        return []


def _status(pid: int, field: str) -> int:
    """A size field of /proc/PID/status, in bytes; 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    except (OSError, ValueError):
        pass
    return 0
