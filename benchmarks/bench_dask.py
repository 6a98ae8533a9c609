"""Dask distributed: a fresh LocalCluster with one single-threaded worker process."""

from __future__ import annotations

import contextlib
import logging
import operator
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from benchmarks.common import Latency, Settings, repeated, time_calls
from benchmarks.workload import FreshFrames, Workload, predict


@contextmanager
def running_cluster() -> Iterator[Any]:
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()
        _stop_resource_tracker()


def _stop_resource_tracker() -> None:
    """The worker processes started multiprocessing's resource tracker, which otherwise lives
    as long as this process: stop it (and reap it) now, leaving no process behind."""
    from multiprocessing import resource_tracker

    tracker = getattr(resource_tracker, "_resource_tracker", None)
    with contextlib.suppress(Exception):
        tracker._stop()  # type: ignore[union-attr]


class DaskBench:
    def __init__(self, client: Any, work: Workload) -> None:
        self.client = client
        self.work = work
        self.model = client.scatter(work.model, broadcast=True)

    def latency(self, settings: Settings) -> Latency:
        client, row = self.client, self.work.row
        got = client.submit(predict, self.model, row, pure=False).result()
        if not np.array_equal(got, self.work.model.predict(row)):
            raise RuntimeError("Dask's prediction differs from the local one")
        return time_calls(
            lambda: client.submit(predict, self.model, row, pure=False).result(),
            settings.latency_calls,
            settings.latency_warmup,
        )

    def rate(self, settings: Settings) -> dict[str, Any]:
        client, n = self.client, settings.pipelined_calls_dask
        client.gather(client.map(operator.add, [1] * 32, [2] * 32, pure=False))
        began = time.perf_counter()
        results = client.gather(client.map(operator.add, [1] * n, [2] * n, pure=False))
        rate = n / (time.perf_counter() - began)
        if results != [3] * n:
            raise RuntimeError("Dask returned wrong results")
        return {"value": rate, "calls": n, "via": "client.map + gather"}

    def big_cold(self, frames: FreshFrames, settings: Settings) -> dict[str, Any]:
        def run(frame: Any) -> None:
            data = self.client.scatter(frame)
            self.client.submit(predict, self.model, data, pure=False).result()
            data.release()

        return {**repeated(settings, frames, run), "how": "scatter + submit + result"}

    def big_warm(self, frames: FreshFrames, settings: Settings) -> dict[str, Any]:
        data = self.client.scatter(frames.base)
        try:
            self.client.submit(predict, self.model, data, pure=False).result()
            timed = repeated(
                settings,
                lambda: data,
                lambda d: self.client.submit(predict, self.model, d, pure=False).result(),
            )
        finally:
            data.release()
        return {**timed, "how": "submit on a scattered future + result"}
