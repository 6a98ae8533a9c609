"""The ML worker: an outbound agent that runs the hub's jobs in this Python environment."""

from giskard.worker.agent import Worker
from giskard.worker.config import WorkerConfig

__all__ = ["Worker", "WorkerConfig"]
