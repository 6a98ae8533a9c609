"""The hub trusts no worker: malformed, oversized, unexpected and flooding messages, dead
peers. None of it crashes the hub, disturbs others, or grows its memory without bound."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import remote_models
from conftest import CONNECTED, WorkerProcess, wait_until
from test_trust_boundary import RogueWorker

from giskard.client import HubClient
from giskard.errors import JobError
from giskard.hub import Hub
from giskard.protocol import CHUNK_SIZE, digest_of
from giskard.rpc.v1 import common_pb2, worker_pb2


class ScriptedRogue(RogueWorker):
    """A rogue worker that answers each job with the messages `answer(job_id)` returns."""

    def __init__(self, hub: Hub, answer: Callable[[str], list[worker_pb2.WorkerMessage]]):
        super().__init__(hub, b"")
        self._answer_with = answer

    def _answer(self, job_id: str) -> None:
        for message in self._answer_with(job_id):
            self._outbox.put(message)

    def send(self, message: worker_pb2.WorkerMessage) -> None:
        self._outbox.put(message)


def output(job_id: str, chunk: bytes) -> worker_pb2.WorkerMessage:
    return worker_pb2.WorkerMessage(output=common_pb2.JobOutput(job_id=job_id, chunk=chunk))


def success(job_id: str, payload: bytes, size: int | None = None) -> worker_pb2.WorkerMessage:
    ref = common_pb2.ArtifactRef(
        blake3=digest_of([payload])[0], size=len(payload) if size is None else size
    )
    end = common_pb2.JobEnd(job_id=job_id, success=common_pb2.JobSuccess(result=ref))
    return worker_pb2.WorkerMessage(end=end)


def refusal_of(rogue: RogueWorker, timeout_s: float = 10) -> worker_pb2.Refusal:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = rogue.received.get(timeout=timeout_s)
        if message.WhichOneof("kind") == "refusal":
            return message.refusal
    raise AssertionError("no refusal")


@pytest.mark.parametrize(
    ("answer", "violation"),
    [
        (lambda j: [output(j, b"x" * (CHUNK_SIZE + 1))], "a result chunk of"),
        (lambda j: [output(j, b"abc"), success(j, b"abc", size=2)], "announced as 2 bytes"),
        (
            lambda j: [worker_pb2.WorkerMessage(end=common_pb2.JobEnd(job_id=j))],
            "a job end without an outcome",
        ),
        (
            lambda j: [worker_pb2.WorkerMessage(hello=worker_pb2.Hello())],
            "a hello message after the hello",
        ),
    ],
)
def test_a_protocol_violation_fails_the_job_and_disconnects_only_that_worker(
    hub: Hub, client: HubClient, iris: tuple, answer: Callable, violation: str
) -> None:
    model, data = iris
    with ScriptedRogue(hub, answer) as rogue:
        with pytest.raises(JobError, match="broke the protocol"):
            client.predict(model, data, wait_for_worker_s=10)
        assert violation in refusal_of(rogue).message
    wait_until(lambda: client.workers() == [], 10, "the rogue to be gone")


def test_messages_about_unknown_or_finished_jobs_are_dropped(
    hub: Hub, client: HubClient, iris: tuple
) -> None:
    from giskard import codec

    payload = codec.encode_to_bytes(np.arange(3))
    model, data = iris

    def answer(job_id: str) -> list[worker_pb2.WorkerMessage]:
        return [
            output("no-such-job", b"zz"),
            success("no-such-job", b"zz"),
            output(job_id, payload),
            success(job_id, payload),
            success(job_id, payload),  # a duplicate end
            output(job_id, b"late"),  # output after the end
        ]

    with ScriptedRogue(hub, answer):
        np.testing.assert_array_equal(client.predict(model, data, wait_for_worker_s=10), [0, 1, 2])
        np.testing.assert_array_equal(client.predict(model, data), [0, 1, 2])
        assert [w["worker_id"] for w in client.workers()] == ["rogue"]


def test_a_flood_of_messages_leaves_the_hub_responsive_and_bounded(
    hub: Hub, client: HubClient
) -> None:
    rss_before = psutil.Process().memory_info().rss
    with ScriptedRogue(hub, lambda j: []) as rogue:
        wait_until(lambda: client.workers(), 10, "the rogue to connect")
        chunk = b"f" * 64 * 1024
        for _ in range(5000):  # 320 MB of output for jobs that do not exist
            rogue.send(output("nope", chunk))
        began = time.monotonic()
        assert [w["worker_id"] for w in client.workers()] == ["rogue"]
        assert time.monotonic() - began < 5
        wait_until(lambda: rogue._outbox.empty(), 60, "the flood to be sent")
    growth = psutil.Process().memory_info().rss - rss_before
    assert growth < 150 * 1024**2, f"the hub's process grew by {growth / 1024**2:.0f} MiB"


def test_dispatch_to_a_worker_that_never_reads_fails_the_job() -> None:
    from giskard.hub.artifacts import ArtifactStore
    from giskard.hub.job import Job
    from giskard.hub.job_events import JobEvents, UnreadResults
    from giskard.hub.jobs import JobBoard
    from giskard.hub.registry import WorkerRegistry, WorkerSession

    async def scenario() -> common_pb2.JobEnd:
        registry = WorkerRegistry()
        jobs = JobBoard(registry, ArtifactStore())
        session = WorkerSession(info=common_pb2.WorkerInfo(pid=7, hostname="h"), peer="p")
        registry.add(session)
        while not session.outbox.full():
            session.outbox.put_nowait(worker_pb2.HubMessage())
        info = common_pb2.JobSpec(info=common_pb2.InfoJob())
        job = Job("j", info, JobEvents(UnreadResults()))
        jobs.submit(job)
        event = await asyncio.wait_for(job.events.next(), 1)
        assert event is not None
        return event.end

    end = asyncio.run(scenario())
    assert end.failure.type == "WorkerNotReading"


# Without a grace: a worker whose connection drops is lost at once (test_blink has the grace).
@pytest.mark.parametrize("hub", [{"reattach_grace_s": 0}], indirect=True)
def test_kill_9_of_the_worker_fails_its_job_promptly(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple, tmp_path: Path
) -> None:
    _, data = iris
    marker = tmp_path / "started"
    failures: list[BaseException] = []

    def submit() -> None:
        try:
            client.predict(remote_models.SlowModel(marker, 600), data)
        except JobError as exc:
            failures.append(exc)

    job = threading.Thread(target=submit)
    job.start()
    wait_until(marker.exists, 10, "the job to start")
    connected_worker.process.send_signal(signal.SIGKILL)
    began = time.monotonic()
    job.join(10)
    assert time.monotonic() - began < 5
    assert failures and "disconnected during the job" in str(failures[0])
    assert failures[0].remote_type == "WorkerLost"


class BlackHoleProxy:
    """A TCP proxy on loopback that can stop forwarding without closing anything."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [downstream, upstream]
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self.frozen.is_set():
                self.frozen.wait()
                while True:  # swallow everything from now on, answer nothing
                    time.sleep(3600)
            try:
                sink.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._server.close()
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def proxy(hub: Hub) -> Iterator[BlackHoleProxy]:
    black_hole = BlackHoleProxy(hub.port)
    yield black_hole
    black_hole.close()


def test_a_silently_dead_link_is_noticed_on_both_sides(
    hub: Hub, client: HubClient, proxy: BlackHoleProxy, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("-h", "127.0.0.1", "-p", str(proxy.port))
    worker.wait_for_output(CONNECTED)
    assert len(client.workers()) == 1
    proxy.frozen.set()
    began = time.monotonic()
    wait_until(lambda: client.workers() == [], 40, "the hub to drop the silent worker")
    worker.wait_for_output("Lost the connection to the Giskard server", timeout_s=40)
    assert time.monotonic() - began < 40
