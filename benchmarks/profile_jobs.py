"""Where a job's time goes: py-spy samples the hub, the worker and its executor while this
process (the client) runs jobs, and the busiest functions of each are printed.

    .venv/bin/python -m benchmarks.profile_jobs [predict|trivial] [--seconds S]

`predict`: 1-row predicts one after the other (the latency path); `trivial`: batches of 500
`len` calls in flight (the throughput path). The raw samples stay in the printed directory
(`py-spy record -f raw` format) for a flame graph. Needs py-spy (`make bench` installs it)
and the right to trace the processes (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.bench_giskard import (
    JOB_TIMEOUT_S,
    connected_worker,
    giskard_home,
    start_hub,
    stored_model,
)
from benchmarks.workload import TRIVIAL, make_workload

SAMPLES_PER_S = 250
SHOWN = 12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", choices=("predict", "trivial"), nargs="?", default="predict")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    beside = Path(sys.executable).with_name("py-spy")  # in the venv, not always on PATH
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy (make bench does)")
    work = make_workload(1000)
    out = Path(tempfile.mkdtemp(prefix="giskard-profile-"))
    with tempfile.TemporaryDirectory() as tmp, giskard_home(Path(tmp)):
        hub, port = start_hub(Path(tmp))
        worker = connected_worker(Path(tmp), port)
        try:
            from giskard.client import HubClient

            with HubClient(f"127.0.0.1:{port}") as client:
                model = stored_model(client, work)
                run = _runner(args.path, client, model, work)
                run()  # the executor started, the model loaded: not sampled
                pids = {"hub": hub.process.pid, "worker": worker.process.pid}
                pids["executor"] = _executor_pid(worker.process.pid)
                samplers = {
                    name: _sample(py_spy, pid, out / f"{name}.txt", args.seconds)
                    for name, pid in pids.items()
                }
                jobs, began = 0, time.monotonic()
                while time.monotonic() - began < args.seconds:
                    jobs += run()
                for sampler in samplers.values():
                    sampler.wait(timeout=args.seconds + 60)
        finally:
            worker.stop()
            hub.stop()
    print(f"{args.path}: {jobs / args.seconds:.0f} jobs/s while sampled; raw samples in {out}")
    for name in pids:
        _print_busiest(name, out / f"{name}.txt")


def _runner(path: str, client: Any, model: Any, work: Any) -> Any:
    def predict() -> int:
        client.predict(model, work.row, timeout_s=JOB_TIMEOUT_S)
        return 1

    def trivial() -> int:
        function, *arguments = TRIVIAL
        handles = [client.submit(function, *arguments, timeout_s=JOB_TIMEOUT_S) for _ in range(500)]
        for handle in handles:
            handle.result(timeout=JOB_TIMEOUT_S)
        return len(handles)

    return predict if path == "predict" else trivial


def _executor_pid(worker_pid: int) -> int:
    for child in psutil.Process(worker_pid).children(recursive=True):
        if any("executor" in part for part in child.cmdline()):
            return child.pid
    raise SystemExit("the worker has no executor running")


def _sample(py_spy: str, pid: int, path: Path, seconds: float) -> subprocess.Popen[bytes]:
    command = [py_spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r"]
    command += [str(SAMPLES_PER_S), "-f", "raw", "-o", str(path), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _print_busiest(name: str, path: Path) -> None:
    """The functions the samples were in (self time), idle waits (epoll) included, as a
    share of all samples of the process's threads."""
    own: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        own[stack.rsplit(";", 1)[-1]] += int(count)
    total = sum(own.values()) or 1
    print(f"\n{name}: {total} samples")
    for function, count in own.most_common(SHOWN):
        print(f"  {100 * count / total:5.1f}%  {function[:100]}")


if __name__ == "__main__":
    main()
