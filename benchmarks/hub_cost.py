"""The hub's own cost per job: a hub and a worker subprocess, HubClient in this process.

    .venv/bin/python -m benchmarks.hub_cost [--predicts N] [--trivial N]

Prints one JSON line: 1-row predict p50 (ms) and the CPU per predict (µs, user + system over
the timed calls) of the hub, the worker (with its executors) and the client (this process),
then pipelined trivial jobs/s (`HubClient.submit`, all in flight) and the same CPU figures
per trivial job. Run it against two
builds alternately (PYTHONPATH=OTHER/src) to compare them on the same machine state.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
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
from benchmarks.common import all_results
from benchmarks.workload import TRIVIAL, make_workload


def cpu_s(process: psutil.Process, children: bool = True) -> float:
    """User + system CPU time of `process`, and of its live children (a worker's executors)."""
    total = 0.0
    for each in [process, *(process.children(recursive=True) if children else [])]:
        with suppress(psutil.Error):
            times = each.cpu_times()
            total += times.user + times.system
    return total


def measured(
    clocks: dict[str, Callable[[], float]], run: Callable[[], list[float]], jobs: int
) -> dict[str, Any]:
    """Run `run` (which returns the wall times it measured); the CPU per job (µs) read on
    each of `clocks`, by name."""
    before, began = {name: clock() for name, clock in clocks.items()}, time.perf_counter()
    durations = run()
    elapsed = time.perf_counter() - began
    cpu_us = {name: (clock() - before[name]) / jobs * 1e6 for name, clock in clocks.items()}
    return {"wall_s": elapsed, "cpu_us": cpu_us, "durations": durations}


def predicts(client: Any, model: Any, row: Any, count: int) -> list[float]:
    durations = []
    for _ in range(count):
        began = time.perf_counter()
        client.predict(model, row, timeout_s=JOB_TIMEOUT_S)  # as the benchmark's predicts
        durations.append(time.perf_counter() - began)
    return durations


def pipelined(client: Any, count: int) -> list[float]:
    fn, *args = TRIVIAL
    all_results([client.submit(fn, *args) for _ in range(count)])
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predicts", type=int, default=800)
    parser.add_argument("--trivial", type=int, default=3000)
    options = parser.parse_args()
    from giskard.client import HubClient

    work = make_workload(big_rows=0)
    with tempfile.TemporaryDirectory() as tmp, giskard_home(Path(tmp)):
        hub, port = start_hub(Path(tmp))
        worker = connected_worker(Path(tmp), port)
        try:
            client = HubClient(f"127.0.0.1:{port}")
            hub_process, worker_process = (psutil.Process(p.process.pid) for p in (hub, worker))
            clocks = {
                "hub": lambda: cpu_s(hub_process),
                "worker": lambda: cpu_s(worker_process),
                "client": lambda: cpu_s(psutil.Process(), children=False),
            }
            model = stored_model(client, work)
            predicts(client, model, work.row, 100)  # warm-up
            pipelined(client, 200)
            latency = measured(
                clocks,
                lambda: predicts(client, model, work.row, options.predicts),
                options.predicts,
            )
            rate = measured(clocks, lambda: pipelined(client, options.trivial), options.trivial)
        finally:
            worker.stop()
            hub.stop()
    print(
        json.dumps(
            {
                "predict_p50_ms": round(statistics.median(latency["durations"]) * 1000, 3),
                **{f"predict_{k}_cpu_us": round(v) for k, v in latency["cpu_us"].items()},
                "trivial_jobs_per_s": round(options.trivial / rate["wall_s"]),
                **{f"trivial_{k}_cpu_us": round(v) for k, v in rate["cpu_us"].items()},
            }
        )
    )


if __name__ == "__main__":
    main()
