"""The hub's own cost per job: a hub and a worker subprocess, HubClient in this process.

    .venv/bin/python -m benchmarks.hub_cost [--predicts N] [--trivial N]

Prints one JSON line: 1-row predict p50 (ms) and the hub's CPU per predict (µs, user +
system of the hub process over the timed calls), then pipelined trivial jobs/s
(`HubClient.submit`, all in flight) and the hub's CPU per trivial job. Run it against two
builds alternately (PYTHONPATH=OTHER/src) to compare them on the same machine state.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
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


def hub_cpu_s(hub: psutil.Process) -> float:
    times = hub.cpu_times()
    return times.user + times.system


def measured(hub: psutil.Process, run: Callable[[], list[float]], jobs: int) -> dict[str, Any]:
    """Run `run` (which returns the wall times it measured) and the hub's CPU per job."""
    cpu_before, began = hub_cpu_s(hub), time.perf_counter()
    durations = run()
    elapsed, cpu = time.perf_counter() - began, hub_cpu_s(hub) - cpu_before
    return {"wall_s": elapsed, "hub_cpu_us_per_job": cpu / jobs * 1e6, "durations": durations}


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
            process = psutil.Process(hub.process.pid)
            model = stored_model(client, work)
            predicts(client, model, work.row, 100)  # warm-up
            pipelined(client, 200)
            latency = measured(
                process,
                lambda: predicts(client, model, work.row, options.predicts),
                options.predicts,
            )
            rate = measured(process, lambda: pipelined(client, options.trivial), options.trivial)
        finally:
            worker.stop()
            hub.stop()
    print(
        json.dumps(
            {
                "predict_p50_ms": round(statistics.median(latency["durations"]) * 1000, 3),
                "predict_hub_cpu_us": round(latency["hub_cpu_us_per_job"]),
                "trivial_jobs_per_s": round(options.trivial / rate["wall_s"]),
                "trivial_hub_cpu_us": round(rate["hub_cpu_us_per_job"]),
            }
        )
    )


if __name__ == "__main__":
    main()
