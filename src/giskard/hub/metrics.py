"""The hub's Prometheus metrics, read from its state at scrape time (the console's /metrics).

Each hub has its own CollectorRegistry: several hubs in one process (tests, notebooks) must
not share, nor register twice in, prometheus-client's global one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from giskard import end_reasons
from giskard.errors import EndReason
from giskard.hub.job import Job
from giskard.hub.jobs import BYTES_MOVED, JobBoard
from giskard.hub.worker_states import WORKER_STATES, worker_state
from giskard.rpc.v1 import common_pb2


class HubCollector(Collector):
    """Gauges and counters computed from the hub's status each time they are scraped."""

    def __init__(self, status: Callable[[], dict[str, Any]], jobs: JobBoard) -> None:
        self._status = status
        self._jobs = jobs

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        yield _workers(status["workers"])
        yield GaugeMetricFamily(
            "giskard_hub_queued_jobs",
            "Jobs waiting at the hub for a worker slot.",
            status["queued"],
        )
        yield self._ended()
        yield self._bytes_moved()
        store = status["store"]
        yield GaugeMetricFamily(
            "giskard_hub_artifact_store_bytes",
            "Bytes of job inputs the hub's artifact store holds.",
            store["size_bytes"],
        )
        yield GaugeMetricFamily(
            "giskard_hub_artifact_store_artifacts",
            "Job inputs the hub's artifact store holds.",
            store["artifacts"],
        )

    def _ended(self) -> CounterMetricFamily:
        family = CounterMetricFamily(
            "giskard_hub_jobs_ended",
            "Jobs ended since the hub started, by end reason.",
            labels=["reason"],
        )
        counts = {end_reasons.from_proto(r): n for r, n in self._jobs.ended_by_reason.items()}
        for reason in EndReason:
            family.add_metric([reason.value], counts.get(reason, 0))
        return family

    def _bytes_moved(self) -> CounterMetricFamily:
        family = CounterMetricFamily(
            "giskard_hub_bytes_moved",
            "Bytes of job inputs and results the hub took in or handed out since it started, by"
            " direction: upload (from clients), to_worker, result (from workers). Each movement"
            " counts: an input a worker fetches again counts again; a job's inline inputs count"
            " once; result bytes the hub refuses (a job that ended) do not count.",
            labels=["direction"],
        )
        for direction in BYTES_MOVED:
            family.add_metric([direction], self._jobs.bytes_moved[direction])
        return family


def _workers(workers: list[dict[str, Any]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "giskard_hub_workers", "Workers known to the hub, by state.", labels=["state"]
    )
    states = [worker_state(worker) for worker in workers]
    for state in WORKER_STATES:
        family.add_metric([state], states.count(state))
    return family


class JobLatency:
    """How long each ended job waited at the hub (submitted -> sent to a worker) and ran
    (sent -> ended), by kind: observed as each job ends (JobBoard.ended_observers)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._queue_wait = Histogram(
            "giskard_hub_job_queue_wait_seconds",
            "Time jobs waited at the hub before being sent to a worker, by kind.",
            ["kind"],
            registry=registry,
        )
        self._run = Histogram(
            "giskard_hub_job_run_seconds",
            "Time jobs ran, from being sent to a worker to their end, by kind.",
            ["kind"],
            registry=registry,
        )

    def observe(self, job: Job, end: common_pb2.JobEnd | None, ended_at: float) -> None:
        """A job that was never sent waited until its end, and did not run."""
        sent_at = job.sent_at or ended_at
        self._queue_wait.labels(job.kind).observe(max(0.0, sent_at - job.submitted_at))
        if job.sent_at:
            self._run.labels(job.kind).observe(max(0.0, ended_at - job.sent_at))


CONTENT_TYPE = CONTENT_TYPE_LATEST  # what generate_latest writes


def hub_metrics(status: Callable[[], dict[str, Any]], jobs: JobBoard) -> Callable[[], bytes]:
    """A function that renders the hub's metrics in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(status, jobs))
    jobs.ended_observers.append(JobLatency(registry).observe)
    return lambda: generate_latest(registry)
