"""Reconnecting to a hub that comes and goes: start order, long outages, a quiet log."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CONNECTED, WorkerProcess, free_port

from giskard.hub import Hub

BACKOFF_MAX_S = 3.0
# What an attempt may take beyond the backoff cap: dial, hello, welcome, on a busy machine.
CONNECT_MARGIN_S = 3.0
CANNOT_REACH = "Cannot reach the Giskard server"
LOST = "Lost the connection to the Giskard server"
# gRPC's own reconnect backoff grows from 1 s by 1.6x (with jitter): after about 30 s of
# failed attempts (16 of ours, at most 3 s apart) it waited 7-17 s more than our cap.
OUTAGE_ATTEMPTS = 16


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


@pytest.mark.parametrize("path", ["tcp", "unix-socket"])
def test_worker_reconnects_within_its_cap_after_a_long_outage(
    path: str, tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    """tcp: an explicit key; unix-socket: the local admin key of the worker's own home."""
    home = tmp_path / "hub-home" if path == "unix-socket" else None
    with Hub(port=0, home=home) as hub:
        port = hub.port
        key = "" if path == "unix-socket" else hub.admin_key
        worker = start_worker("-h", "127.0.0.1", "-p", str(port), home=home, api_key=key)
        worker.wait_for_output(CONNECTED)
    worker.wait_for_output(CANNOT_REACH, count=OUTAGE_ATTEMPTS, timeout_s=OUTAGE_ATTEMPTS * 4)
    with Hub(port=port, home=home):
        appeared = time.monotonic()
        worker.wait_for_output(CONNECTED, count=2, timeout_s=60)
        took_s = time.monotonic() - appeared
    assert took_s < BACKOFF_MAX_S + CONNECT_MARGIN_S, f"reconnected {took_s:.1f} s after the hub"


def test_a_lost_hub_is_one_warning_line_per_attempt(
    tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    restarts = 5
    port = free_port()
    worker = None
    for restart in range(restarts + 1):
        with Hub(port=port):
            if worker is None:
                worker = start_worker("-h", "127.0.0.1", "-p", str(port))
            worker.wait_for_output(CONNECTED, count=restart + 1, timeout_s=15)
        worker.wait_for_output(LOST, count=restart + 1)
    assert worker is not None
    assert worker.stop() == 0
    lines = (worker.home / "run" / "ml-worker.log").read_text().splitlines()
    record = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) giskard\.")
    strays = [line for line in lines if not record.match(line)]
    assert not strays, "\n".join(strays)
    warnings = [line for line in lines if " WARNING " in line]
    assert all(LOST in line or CANNOT_REACH in line for line in warnings), "\n".join(warnings)
    lost = [line for line in warnings if LOST in line]
    assert len(lost) == restarts + 1
    # In plain words, not gRPC's.
    reasons = {line.split(f"{port}: ")[1].split(";")[0] for line in lost}
    assert reasons <= {"the server is shutting down", "the connection was closed"}, reasons
    assert all("retrying in" in line for line in warnings)
