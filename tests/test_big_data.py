"""A 1 GB frame: correct predictions, bounded worker memory, and no second transfer."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import psutil
import pytest
from conftest import CONNECTED, WorkerProcess

from giskard.client import HubClient
from giskard.hub import Hub

GIB = 1024**3


def peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def gigabyte_frame(features: pd.DataFrame) -> pd.DataFrame:
    rows = GIB // (8 * features.shape[1])
    picks = np.random.default_rng(0).integers(0, len(features), rows)
    return pd.DataFrame(features.to_numpy()[picks], columns=features.columns)


@pytest.mark.timeout(300)
def test_a_gigabyte_frame_predicts_correctly_within_two_and_a_half_times_its_size(
    hub: Hub,
    client: HubClient,
    start_worker: Callable[..., WorkerProcess],
    breast_cancer: tuple,
) -> None:
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), "--cache-size", "2G")
    worker.wait_for_output(CONNECTED)
    model, features = breast_cancer
    frame = gigabyte_frame(features)
    size = frame.memory_usage(index=False).sum()
    assert size >= 0.99 * GIB

    np.testing.assert_array_equal(client.predict(model, frame), model.predict(frame))

    processes = [psutil.Process(worker.process.pid), *psutil.Process(worker.process.pid).children()]
    peak = sum(peak_rss(p.pid) for p in processes)
    assert peak < 2.5 * size, f"worker and executor peaked at {peak / size:.2f}x the frame"
    # The second job finds the frame in the executor's cache: nothing moves.
    before = worker.output.count("2 of 2 input(s) cached, 0 B sent")
    np.testing.assert_array_equal(client.predict(model, frame), model.predict(frame))
    worker.wait_for_output("2 of 2 input(s) cached, 0 B sent", count=before + 1)
