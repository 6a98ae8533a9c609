"""The worker's settings, validated once."""

from __future__ import annotations

from dataclasses import dataclass, field

from giskard.address import HubAddress
from giskard.credentials import Credentials
from giskard.tls import ChannelSecurity


@dataclass(frozen=True)
class WorkerConfig:
    address: HubAddress
    credentials: Credentials = field(default_factory=lambda: Credentials(None, ""))
    security: ChannelSecurity = field(default_factory=lambda: ChannelSecurity(tls=False))
    # Reconnection: the first retry comes quickly, later ones at most every `backoff_max_s`.
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 3.0
    # How long to wait for the hub's answer to our hello before calling the attempt failed.
    handshake_timeout_s: float = 10.0
    # On SIGTERM/SIGINT, how long the running job may take to finish.
    drain_grace_s: float = 20.0
    # Deserialised models kept, by total pickled size.
    model_cache_bytes: int = 2 * 1024**3
