"""giskard over a real, shaped link: the hub and the worker in two network namespaces.

A veth pair joins the namespaces; `tc ... tbf` holds each direction to 1 Gbit/s. The client
(this process) sits by the hub, as the platform does: it reaches the hub through the hub's
private Unix socket, which does not belong to a network namespace, so a frame crosses the
link once, hub to worker. Needs root (`ip netns`); everything made here is removed on the way
out, even on failure.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import secrets
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bench_giskard import (
    JOB_TIMEOUT_S,
    NotAvailable,
    connected_worker,
    giskard_home,
    start_hub,
    wait_for_active_worker,
)
from benchmarks.common import Settings
from benchmarks.workload import FreshFrames, Workload

MEASURES = ("link_limit", "link_random", "link_realistic")
RATE_BITS_S = 1e9
# tbf: `burst` must hold what arrives in one timer tick at the rate (1 Gbit/s / 250 Hz =
# 500 kB); a raw TCP stream through this link moves 0.95 Gbit/s. `latency` bounds the queue.
TBF = ("rate", "1gbit", "burst", "512kb", "latency", "20ms")
HUB_IP, WORKER_IP = "10.213.0.1", "10.213.0.2"
HUB_PORT = 40051  # the namespace is new: nothing else listens there


@dataclass(frozen=True)
class Link:
    hub_ns: str
    worker_ns: str


def run_in(namespace: str) -> tuple[str, ...]:
    """The prefix that runs a command in `namespace`."""
    return ("ip", "netns", "exec", namespace)


def cold_over_link(work: Workload, settings: Settings) -> dict[str, Any]:
    """Seconds of a cold predict over the link, for an incompressible and a realistic frame,
    and the link's limit for that many bytes."""
    if os.geteuid() != 0:
        raise NotAvailable("needs root for ip netns")
    from giskard.client import HubClient

    rows = settings.link_rows
    frames = {
        "link_random": FreshFrames(work.random_frame(rows)),
        "link_realistic": FreshFrames(work.repeated_frame(rows)),
    }
    frame_bytes = int(frames["link_random"].base.memory_usage(index=False).sum())
    outcome: dict[str, Any] = {"link_limit": frame_bytes * 8 / RATE_BITS_S, "rows": rows}
    with shaped_link() as link, tempfile.TemporaryDirectory(prefix="bench-link-") as tmp:
        home = Path(tmp)
        with giskard_home(home):
            hub, port = start_hub(home, host=HUB_IP, port=HUB_PORT, wrap=run_in(link.hub_ns))
            worker = None
            try:
                with HubClient(f"127.0.0.1:{port}") as client:  # the hub's private socket
                    _, key = client.create_key("worker", "bench-link")
                    worker = connected_worker(
                        home, port, host=HUB_IP, wrap=run_in(link.worker_ns), api_key=key
                    )
                    wait_for_active_worker(client)
                    outcome.update(_cold_predicts(client, work, frames, settings))
            finally:
                if worker is not None:
                    worker.stop()
                hub.stop()
    return outcome


def _cold_predicts(
    client: Any, work: Workload, frames: dict[str, FreshFrames], settings: Settings
) -> dict[str, Any]:
    """The median seconds of cold predicts of each kind of frame, and each run's. The kinds
    take turns, so that neither always runs first (after the model's load) or last (into a
    fuller cache); the first round is not timed, even with --quick (one-off costs)."""
    model = client.put(work.model)
    _predict(client, model, work.row)  # the executor up, the model loaded: neither is timed
    runs: dict[str, list[float]] = {name: [] for name in frames}
    for attempt in range(1 + settings.link_repeats):
        for name, fresh in frames.items():
            frame = fresh()
            began = time.perf_counter()
            _predict(client, model, frame)
            if attempt:
                runs[name].append(time.perf_counter() - began)
            del frame
    return {
        **{name: statistics.median(timed) for name, timed in runs.items()},
        **{f"{name}_runs_s": timed for name, timed in runs.items()},
    }


def _predict(client: Any, model: Any, frame: Any) -> None:
    got = client.predict(model, frame, timeout_s=JOB_TIMEOUT_S)
    if len(got) != len(frame):
        raise RuntimeError(f"{len(got)} predictions for {len(frame)} rows")


@contextlib.contextmanager
def shaped_link() -> Iterator[Link]:
    """Two new namespaces joined by a shaped veth pair; all removed when the block ends, or
    at exit if the block never ends (a measurement that overran its deadline)."""
    tag = secrets.token_hex(3)  # names unique to this run; interface names <= 15 characters
    link = Link(hub_ns=f"gbench-{tag}-hub", worker_ns=f"gbench-{tag}-worker")
    hub_if, worker_if = f"gb{tag}h", f"gb{tag}w"
    remove = functools.partial(_remove, link, hub_if)
    atexit.register(remove)
    try:
        for namespace in (link.hub_ns, link.worker_ns):
            _ip("netns", "add", namespace)
        _ip("link", "add", hub_if, "type", "veth", "peer", "name", worker_if)
        for namespace, interface, address in (
            (link.hub_ns, hub_if, HUB_IP),
            (link.worker_ns, worker_if, WORKER_IP),
        ):
            _ip("link", "set", interface, "netns", namespace)
            _ip("-n", namespace, "addr", "add", f"{address}/30", "dev", interface)
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", namespace, "link", "set", interface, "up")
            _run(*run_in(namespace), "tc", "qdisc", "add", "dev", interface, "root", "tbf", *TBF)
        yield link
    finally:
        remove()
        atexit.unregister(remove)


def _remove(link: Link, hub_if: str) -> None:
    """Kill what still runs in the namespaces (a namespace outlives its name while a process
    is in it), delete them, which deletes the veth pair with them, and the pair by name in
    case it never left this namespace. Each step may find nothing to do."""
    for namespace in (link.hub_ns, link.worker_ns):
        listed = _quietly("ip", "netns", "pids", namespace)
        for pid in listed.split():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _quietly("ip", "netns", "delete", namespace)
    _quietly("ip", "link", "delete", hub_if)


def _ip(*args: str) -> None:
    _run("ip", *args)


def _run(*command: str) -> None:
    """Run a setup command; its failure means this machine cannot make the link (n/a)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NotAvailable(f"{command[0]}: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise NotAvailable(f"`{' '.join(command[:4])} ...` failed: {why}")


def _quietly(*command: str) -> str:
    """Run a clean-up command; its output, or "" if it failed."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""
