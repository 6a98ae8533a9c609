"""The worker's settings, validated once."""

from __future__ import annotations

from dataclasses import dataclass, field

from giskard.address import HubAddress
from giskard.credentials import Credentials
from giskard.identity import default_worker_name
from giskard.protocol import RECONNECT_MAX_S
from giskard.tls import ChannelSecurity
from giskard.worker.executor import ExecutorOptions

DEFAULT_CACHE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class WorkerConfig:
    address: HubAddress
    credentials: Credentials = field(default_factory=lambda: Credentials(None, ""))
    security: ChannelSecurity = field(default_factory=lambda: ChannelSecurity(tls=False))
    # Reconnection: the first retry comes quickly, later ones at most every `backoff_max_s`.
    backoff_initial_s: float = 0.5
    backoff_max_s: float = RECONNECT_MAX_S
    # How long to wait for the hub's answer to our hello before calling the attempt failed.
    handshake_timeout_s: float = 10.0
    # On SIGTERM/SIGINT, how long the running job may take to finish.
    drain_grace_s: float = 20.0
    # When the connection drops, how long the jobs keep running, waiting to be reattached
    # to the next session, before they stop: until a hub's welcome says its own grace.
    reattach_grace_s: float = 30.0
    # Jobs run at once, each in its own executor process.
    concurrency: int = 1
    # Models and datasets kept by the executors, by total serialised size (split between them).
    cache_bytes: int = DEFAULT_CACHE_BYTES
    # How much a job may allocate beyond what its executor held before it; 0: no limit.
    max_job_memory: int = 0
    # Unique per hub; jobs may ask for it, or for labels (checked by giskard.labels).
    name: str = field(default_factory=default_worker_name)
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def prefetch(self) -> int:
        """Jobs held ready beyond the running ones: one per slot, so a slot that frees finds
        its next job already here instead of waiting for a round trip to the hub."""
        return self.concurrency

    def executor_options(self) -> ExecutorOptions:
        return ExecutorOptions(
            cache_bytes=self.cache_bytes // self.concurrency, max_job_memory=self.max_job_memory
        )
