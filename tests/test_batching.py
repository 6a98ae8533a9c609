"""Batches on the session stream: several queued messages in one stream message, both ways,
handled exactly as if they had come one by one; old peers get single messages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import numpy as np
import pytest
from conftest import CONNECTED, WorkerProcess, wait_until
from test_hub_hardening import ScriptedRogue, output, refusal_of, success

from giskard import codec
from giskard.client import HubClient
from giskard.errors import JobCancelledError, JobError
from giskard.hub import Hub
from giskard.hub.registry import WorkerSession
from giskard.hub.worker_service import WorkerHubService
from giskard.protocol import PROTOCOL_VERSION
from giskard.rpc.v1 import common_pb2, worker_pb2
from giskard.session_batches import BATCH_MAX_BYTES, BATCH_MAX_MESSAGES, OutboxReader, worker_batch

JOBS = 120


def batch(*messages: worker_pb2.WorkerMessage) -> worker_pb2.WorkerMessage:
    return worker_batch(list(messages))


class ForgedWorker(ScriptedRogue):
    """A raw session whose hello says how many jobs it takes and whether it accepts batches."""

    def __init__(
        self,
        hub: Hub,
        answer: Callable[[str], list[worker_pb2.WorkerMessage]],
        *,
        accepts_batches: bool,
        concurrency: int = 1,
    ) -> None:
        super().__init__(hub, answer)
        info = common_pb2.WorkerInfo(worker_id="forged", pid=1, hostname="forged")
        self.hello = worker_pb2.Hello(
            protocol_version=PROTOCOL_VERSION,
            info=info,
            concurrency=concurrency,
            accepts_batches=accepts_batches,
        )

    def __enter__(self) -> ForgedWorker:
        self.send(worker_pb2.WorkerMessage(hello=self.hello))
        self._thread.start()
        return self

    def _serve(self) -> None:
        try:
            for message in self._responses:
                self.received.put(message)
                batched = message.WhichOneof("kind") == "batch"
                for inner in message.batch.messages if batched else [message]:
                    if inner.WhichOneof("kind") == "job":
                        self._answer(inner.job.job_id)
        except grpc.RpcError:
            pass

    def received_kinds(self) -> list[str]:
        return [message.WhichOneof("kind") for message in list(self.received.queue)]


def the_session(hub: Hub) -> WorkerSession:
    registry = hub.registry
    assert registry is not None
    sessions = wait_until(lambda: registry.sessions, 10, "a worker session")
    assert isinstance(sessions, list) and len(sessions) == 1
    return sessions[0]


def submit_queued(client: HubClient, count: int) -> list:
    """`count` calls submitted before any worker is there: the hub dispatches a connecting
    worker's first jobs together."""
    return [client.submit_call(abs, (-i,), wait_for_worker_s=60) for i in range(count)]


def connect_worker(hub: Hub, start_worker: Callable[..., WorkerProcess]) -> WorkerSession:
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), "--concurrency", "4")
    worker.wait_for_output(CONNECTED)
    return the_session(hub)


def force_stop_held_jobs(client: HubClient, hub: Hub, start_worker: Callable) -> WorkerSession:
    """A worker gets 8 long jobs at once (4 run, 4 wait for a slot), then is force-stopped:
    their 8 ends are queued at once."""
    handles = [client.submit_call(time.sleep, (600,), wait_for_worker_s=60) for _ in range(8)]
    session = connect_worker(hub, start_worker)
    [worker] = client.workers()
    client.stop_worker(f"{worker['pid']}@{worker['hostname']}", force=True)
    for handle in handles:
        with pytest.raises(JobCancelledError):
            handle.result(timeout=60)
    return session


def test_many_jobs_at_once_all_end_right_with_batches_of_jobs(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    handles = submit_queued(client, JOBS)
    session = connect_worker(hub, start_worker)
    assert [handle.result(timeout=120) for handle in handles] == list(range(JOBS))
    assert session.batches_sent > 0, "the hub sent no batch of jobs"


def test_ends_queued_at_once_go_in_a_batch(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    session = force_stop_held_jobs(client, hub, start_worker)
    assert session.batches_received > 0, "the worker sent no batch"


def test_outputs_straddling_batches_arrive_whole_and_before_their_end(
    hub: Hub, client: HubClient, iris: tuple
) -> None:
    model, data = iris
    payload = codec.encode_to_bytes(np.arange(50_000))
    third = len(payload) // 3

    def answer(job_id: str) -> list[worker_pb2.WorkerMessage]:
        parts = [payload[:third], payload[third : 2 * third], payload[2 * third :]]
        return [
            batch(output(job_id, parts[0]), output(job_id, parts[1])),
            batch(output(job_id, parts[2]), success(job_id, payload)),
        ]

    with ForgedWorker(hub, answer, accepts_batches=True):
        for _ in range(2):
            result = client.predict(model, data, wait_for_worker_s=10)
            np.testing.assert_array_equal(result, np.arange(50_000))
        assert the_session(hub).batches_received == 4


def test_the_hub_batches_jobs_for_a_worker_that_accepts_batches(
    hub: Hub, client: HubClient, iris: tuple
) -> None:
    payload = codec.encode_to_bytes(np.arange(3))
    handles = submit_queued(client, 8)
    answer = lambda j: [batch(output(j, payload), success(j, payload))]  # noqa: E731
    with ForgedWorker(hub, answer, accepts_batches=True, concurrency=8) as forged:
        assert [handle.result(timeout=30).tolist() for handle in handles] == [[0, 1, 2]] * 8
        assert "batch" in forged.received_kinds()


@pytest.mark.parametrize(
    ("answer", "violation"),
    [
        (lambda j: [batch(batch(output(j, b"abc")))], "a batch message in a batch"),
        (lambda j: [batch()], "an empty batch"),
        (
            lambda j: [
                batch(output(j, b"abc"), worker_pb2.WorkerMessage(end=common_pb2.JobEnd(job_id=j)))
            ],
            "a job end without an outcome",
        ),
        (
            lambda j: [batch(worker_pb2.WorkerMessage(hello=worker_pb2.Hello()))],
            "a hello message after the hello",
        ),
    ],
)
def test_a_bad_batch_ends_the_session_as_a_protocol_violation(
    hub: Hub, client: HubClient, iris: tuple, answer: Callable, violation: str
) -> None:
    model, data = iris
    with ForgedWorker(hub, answer, accepts_batches=True) as forged:
        with pytest.raises(JobError, match="broke the protocol"):
            client.predict(model, data, wait_for_worker_s=10)
        refusal = refusal_of(forged)
        assert refusal.reason == worker_pb2.Refusal.BAD_MESSAGE
        assert violation in refusal.message
    wait_until(lambda: client.workers() == [], 10, "the forged worker to be gone")


def test_a_worker_without_batches_gets_single_messages(hub: Hub, client: HubClient) -> None:
    payload = codec.encode_to_bytes(np.arange(3))
    handles = submit_queued(client, 8)
    answer = lambda j: [output(j, payload), success(j, payload)]  # noqa: E731
    with ForgedWorker(hub, answer, accepts_batches=False, concurrency=8) as forged:
        assert [handle.result(timeout=30).tolist() for handle in handles] == [[0, 1, 2]] * 8
        assert "batch" not in forged.received_kinds()
        assert forged.received_kinds().count("job") == 8
        assert the_session(hub).batches_sent == 0


def test_a_hub_without_batches_gets_single_messages(
    hub: Hub,
    client: HubClient,
    start_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    welcome = WorkerHubService._welcome

    def older_welcome(self: WorkerHubService, *args: object) -> worker_pb2.HubMessage:
        message = welcome(self, *args)
        message.welcome.accepts_batches = False
        return message

    monkeypatch.setattr(WorkerHubService, "_welcome", older_welcome)
    session = force_stop_held_jobs(client, hub, start_worker)
    assert session.batches_received == 0


def test_a_batch_takes_what_is_queued_within_its_bounds_and_in_order() -> None:
    async def sent(queued: list[worker_pb2.WorkerMessage | None]) -> list[list[int]]:
        outbox: asyncio.Queue[worker_pb2.WorkerMessage | None] = asyncio.Queue()
        for message in queued:
            outbox.put_nowait(message)
        reader = OutboxReader(outbox, worker_batch)
        reader.batching = True
        stream = []
        while (message := await reader.next()) is not None:
            batched = message.WhichOneof("kind") == "batch"
            stream.append(
                [m.progress.done for m in (message.batch.messages if batched else [message])]
            )
        return stream

    def small(done: int) -> worker_pb2.WorkerMessage:
        return worker_pb2.WorkerMessage(progress=common_pb2.JobProgress(job_id="j", done=done))

    def big(done: int) -> worker_pb2.WorkerMessage:
        progress = common_pb2.JobProgress(job_id="j" * BATCH_MAX_BYTES, done=done)
        return worker_pb2.WorkerMessage(progress=progress)

    many = [small(i) for i in range(BATCH_MAX_MESSAGES + 10)]
    expected = [list(range(BATCH_MAX_MESSAGES)), list(range(BATCH_MAX_MESSAGES, len(many)))]
    assert asyncio.run(sent([*many, None, small(999)])) == expected
    assert asyncio.run(sent([small(1), small(2), big(3), small(4), None])) == [[1, 2], [3], [4]]
    assert asyncio.run(sent([small(1), None])) == [[1]]
