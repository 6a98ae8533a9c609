"""The benchmark's shaped link: namespaces joined and shaped, and nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from benchmarks.bench_link import HUB_IP, WORKER_IP, run_in, shaped_link

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ip netns needs root")


def _ip(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=30, check=True
    ).stdout


# A listener on the hub's side answers "ok" once; the dialler, on the worker's side, retries
# until it listens (each attempt bounded), for at most 10 s.
LISTEN = (
    f"import socket; s = socket.create_server(({HUB_IP!r}, 5000)); s.settimeout(20);"
    " c, _ = s.accept(); c.sendall(b'ok'); c.close()"
)
DIAL = textwrap.dedent(f"""
    import socket, time
    deadline = time.monotonic() + 10
    while True:
        try:
            print(socket.create_connection(({HUB_IP!r}, 5000), timeout=2).recv(2).decode())
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
""")


def test_the_namespaces_reach_each_other_through_a_1gbit_tbf() -> None:
    with shaped_link() as link:
        listener = subprocess.Popen([*run_in(link.hub_ns), sys.executable, "-c", LISTEN])
        try:
            dialled = subprocess.run(
                [*run_in(link.worker_ns), sys.executable, "-c", DIAL],
                capture_output=True,
                text=True,
                timeout=30,
            )
        finally:
            listener.kill()
            listener.wait(timeout=10)
        assert dialled.stdout.strip() == "ok", dialled.stderr
        qdiscs = subprocess.run(
            [*run_in(link.hub_ns), "tc", "qdisc", "show"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert "tbf" in qdiscs and "rate 1Gbit" in qdiscs
        assert WORKER_IP in _ip("-n", link.worker_ns, "addr")


def test_a_failure_inside_removes_namespaces_interfaces_and_their_processes() -> None:
    with pytest.raises(RuntimeError, match="the measurement failed"), shaped_link() as link:
        sleeper = subprocess.Popen([*run_in(link.hub_ns), "sleep", "600"])
        raise RuntimeError("the measurement failed")
    assert sleeper.wait(timeout=10) != 0  # killed, not ended by itself
    namespaces = _ip("netns", "list")
    assert link.hub_ns not in namespaces and link.worker_ns not in namespaces
    tag = link.hub_ns.split("-")[1]
    assert f"gb{tag}" not in _ip("link", "show")
