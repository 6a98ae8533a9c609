"""The transport's floor: the same grpcio, echoing bytes, with no job machinery at all."""

from __future__ import annotations

import queue
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from benchmarks import echo_server
from benchmarks.common import (
    Latency,
    LoggedProcess,
    Settings,
    all_results,
    child_env,
    free_port,
    pipelined_rate,
    python_command,
    time_calls,
)


@contextmanager
def running_echo_server(transport: str) -> Iterator[str]:
    """Start the echo server subprocess; yield the target to dial."""
    with tempfile.TemporaryDirectory(prefix="bench-echo-") as tmp:
        port = free_port()
        unix_path = str(Path(tmp) / "echo.sock")
        command = python_command(
            "-m", "benchmarks.echo_server", "--port", str(port), "--unix", unix_path
        )
        server = LoggedProcess.spawn(command, child_env(), watch=(echo_server.READY,))
        try:
            server.wait_for(echo_server.READY, 30)
            yield f"unix:{unix_path}" if transport == "unix" else f"127.0.0.1:{port}"
        finally:
            server.stop()


class EchoClient:
    """A unary stub and one bidirectional stream, kept open, on one channel."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.unary = self.channel.unary_unary(echo_server.UNARY)
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._responses = self.channel.stream_stream(echo_server.STREAM)(
            iter(self._outbox.get, None)
        )

    def bidi(self, payload: bytes) -> bytes:
        """Send one message on the open stream, read one back."""
        self._outbox.put(payload)
        return next(self._responses)

    def close(self) -> None:
        self._outbox.put(None)
        for _ in self._responses:
            pass
        self.channel.close()


def unary_latency(client: EchoClient, payload: bytes, settings: Settings) -> Latency:
    return time_calls(
        lambda: client.unary(payload), settings.latency_calls, settings.latency_warmup
    )


def bidi_latency(client: EchoClient, payload: bytes, settings: Settings) -> Latency:
    return time_calls(lambda: client.bidi(payload), settings.latency_calls, settings.latency_warmup)


def unary_rate(client: EchoClient, payload: bytes, settings: Settings) -> float:
    """Unary echos per second, all in flight at once (`.future()`), as giskard's `submit`."""
    for future in [client.unary.future(payload) for _ in range(settings.pipelined_threads)]:
        future.result()
    began = time.perf_counter()
    futures = [client.unary.future(payload) for _ in range(settings.pipelined_calls)]
    all_results(futures)
    return settings.pipelined_calls / (time.perf_counter() - began)


def unary_rate_threads(client: EchoClient, payload: bytes, settings: Settings) -> float:
    """Unary echos per second, from the same thread pool as giskard's blocking calls."""
    return pipelined_rate(
        lambda: client.unary(payload), settings.pipelined_calls, settings.pipelined_threads
    )
