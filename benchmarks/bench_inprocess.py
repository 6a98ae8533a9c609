"""The floor: the model called directly in this process."""

from __future__ import annotations

from typing import Any

from benchmarks.common import Latency, Settings, repeated, time_calls
from benchmarks.workload import FreshFrames, Workload


def latency(work: Workload, settings: Settings) -> Latency:
    return time_calls(
        lambda: work.model.predict(work.row), settings.latency_calls, settings.latency_warmup
    )


def big_predict(work: Workload, frames: FreshFrames, settings: Settings) -> dict[str, Any]:
    work.model.predict(frames.base)  # warm up
    return repeated(settings, lambda: frames.base, work.model.predict)
