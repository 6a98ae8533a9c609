"""Ray: a fresh local cluster (`ray.init(num_cpus=2)`), shut down afterwards."""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from benchmarks.common import Latency, Settings, repeated, time_calls
from benchmarks.workload import FreshFrames, Workload, predict


def add(a: int, b: int) -> int:
    return operator.add(a, b)


@contextmanager
def running_ray() -> Iterator[Any]:
    import ray

    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
        yield ray
    finally:
        ray.shutdown()


class RayBench:
    def __init__(self, ray: Any, work: Workload) -> None:
        self.ray = ray
        self.work = work
        self.model = ray.put(work.model)
        self.predict = ray.remote(predict)
        self.add = ray.remote(add)

    def latency(self, settings: Settings) -> Latency:
        ray, row = self.ray, self.work.row
        got = ray.get(self.predict.remote(self.model, row))
        if not np.array_equal(got, self.work.model.predict(row)):
            raise RuntimeError("Ray's prediction differs from the local one")
        return time_calls(
            lambda: ray.get(self.predict.remote(self.model, row)),
            settings.latency_calls,
            settings.latency_warmup,
        )

    def rate(self, settings: Settings) -> dict[str, Any]:
        ray, n = self.ray, settings.pipelined_calls
        ray.get([self.add.remote(1, 2) for _ in range(32)])
        began = time.perf_counter()
        results = ray.get([self.add.remote(1, 2) for _ in range(n)])
        rate = n / (time.perf_counter() - began)
        if results != [3] * n:
            raise RuntimeError("Ray returned wrong results")
        return {"value": rate, "calls": n, "via": "list of .remote() + ray.get"}

    def big_cold(self, frames: FreshFrames, settings: Settings) -> dict[str, Any]:
        timed = repeated(
            settings, frames, lambda frame: self.ray.get(self.predict.remote(self.model, frame))
        )
        return {**timed, "how": "ray.get(f.remote(model_ref, frame))"}

    def big_warm(self, frames: FreshFrames, settings: Settings) -> dict[str, Any]:
        data = self.ray.put(frames.base)
        self.ray.get(self.predict.remote(self.model, data))
        timed = repeated(
            settings, lambda: data, lambda ref: self.ray.get(self.predict.remote(self.model, ref))
        )
        return {**timed, "how": "ray.get(f.remote(model_ref, frame_ref))"}
