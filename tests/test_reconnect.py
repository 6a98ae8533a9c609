"""Reconnecting to a hub that comes and goes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from conftest import CONNECTED, WorkerProcess, free_port

from giskard.hub import Hub

BACKOFF_MAX_S = 3.0
# What an attempt may take beyond the backoff cap: dial, hello, welcome, on a busy machine.
CONNECT_MARGIN_S = 3.0
CANNOT_REACH = "Cannot reach the Giskard server"


def test_worker_started_before_the_first_hub_of_its_home_connects(
    tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    """No key given, no hub ever started in this home: the worker waits for the local hub
    (its key and its private socket appear with it) instead of being refused without key."""
    home, port = tmp_path / "home", free_port()
    worker = start_worker("-h", "127.0.0.1", "-p", str(port), home=home, api_key="")
    worker.wait_for_output(CANNOT_REACH)
    with Hub(port=port, home=home):
        appeared = time.monotonic()
        worker.wait_for_output(CONNECTED, timeout_s=BACKOFF_MAX_S + CONNECT_MARGIN_S)
        assert time.monotonic() - appeared < BACKOFF_MAX_S + CONNECT_MARGIN_S
    assert worker.process.poll() is None
