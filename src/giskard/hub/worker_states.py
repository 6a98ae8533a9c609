"""The one word that says where a listed worker stands, for `giskard hub workers`, the
console and its metrics."""

from __future__ import annotations

from typing import Any

WORKER_STATES = ("active", "standby", "paused", "draining", "away")


def worker_state(worker: dict[str, Any]) -> str:
    """One of WORKER_STATES for a worker of `HubClient.status()`: the strongest that holds
    (away, then draining, then paused, then whether it is the active worker)."""
    if worker["away_since"]:
        return "away"
    if worker["draining"]:
        return "draining"
    if worker["paused"]:
        return "paused"
    return "active" if worker["active"] else "standby"
