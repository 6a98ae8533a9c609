"""Where giskard keeps its state and logs."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME_NAME = "giskard-home"
WORKER_LOG_NAME = "ml-worker.log"


def giskard_home() -> Path:
    """`$GISKARD_HOME`, or `~/giskard-home`."""
    configured = os.environ.get("GISKARD_HOME")
    return Path(configured).expanduser() if configured else Path.home() / DEFAULT_HOME_NAME


def run_dir() -> Path:
    """Logs, lock and pid files."""
    return giskard_home() / "run"


def worker_log_path() -> Path:
    return run_dir() / WORKER_LOG_NAME
