"""The hub's job lifecycle (jobs.JobBoard), transition by transition, without gRPC: whatever
path a job takes, it ends once, frees its slot and unpins its inputs exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from giskard.hub import jobs as jobs_module
from giskard.hub.artifacts import ArtifactStore
from giskard.hub.job import Job, JobState
from giskard.hub.job_events import JobEvents, UnreadResults
from giskard.hub.jobs import JobBoard
from giskard.hub.registry import WorkerRegistry, WorkerSession
from giskard.rpc.v1 import client_pb2, common_pb2, worker_pb2

INPUT = "a" * 64
SHARED = "b" * 64


class CountingStore(ArtifactStore):
    """The real store, counting each pin and unpin."""

    def __init__(self) -> None:
        super().__init__()
        self.pins: Counter[str] = Counter()
        self.unpins: Counter[str] = Counter()

    def pin(self, address: str) -> None:
        self.pins[address] += 1
        super().pin(address)

    def unpin(self, address: str) -> None:
        self.unpins[address] += 1
        super().unpin(address)


class Parts:
    """A job board with its registry and store, wired as the hub wires them."""

    def __init__(
        self,
        no_worker_grace_s: float = 30.0,
        unread_max_bytes: int = 1024,
        reattach_grace_s: float = 30.0,
    ) -> None:
        self.registry = WorkerRegistry()
        self.store = CountingStore()
        self.board = JobBoard(
            self.registry, self.store, no_worker_grace_s, reattach_grace_s=reattach_grace_s
        )
        self.unread = UnreadResults(unread_max_bytes)
        self.jobs: list[Job] = []  # every job submitted

    async def connect(self, concurrency: int = 1, prefetch: int = 0) -> WorkerSession:
        info = common_pb2.WorkerInfo(pid=7, hostname="h", worker_id="w")
        session = WorkerSession(info=info, peer="p", concurrency=concurrency, prefetch=prefetch)
        self.registry.add(session)
        return session

    def submit(
        self,
        job_id: str,
        inputs: tuple[str, ...] = (INPUT,),
        info: bool = False,
        timeout_s: float | None = None,
    ) -> Job:
        spec = common_pb2.JobSpec(**{"info" if info else "call": {}})
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        job = Job(job_id, spec, JobEvents(self.unread), inputs=list(inputs), deadline=deadline)
        self.jobs.append(job)
        self.board.submit(job)
        return job

    def dispatch_ids(self, job_ids: tuple[str, ...]) -> list[str]:
        """The ids the worker knows these jobs by (an id no job has stays as it is)."""
        dispatched = {job.job_id: job.dispatch_id for job in self.jobs if job.dispatch_id}
        return [dispatched.get(job_id, job_id) for job_id in job_ids]


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


def sent(session: WorkerSession) -> list[str]:
    """What the hub sent the worker since last asked: 'job j', 'cancel j', …"""
    out = []
    while not session.outbox.empty():
        message = session.outbox.get_nowait()
        assert message is not None
        kind = message.WhichOneof("kind")
        if kind in ("job", "cancel"):
            out.append(f"{kind} {client_id(getattr(message, kind).job_id)}")
    return out


def client_id(dispatch_id: str) -> str:
    """The client's id of a job, from the id its worker knows it by (see Job.dispatch_id)."""
    return dispatch_id.partition(".")[0]


def holding(session: WorkerSession) -> dict[str, Job]:
    """The jobs holding the session's slots, by their clients' ids."""
    return {job.job_id: job for job in session.jobs.values()}


def _drain(job: Job) -> list[client_pb2.JobEvent | None]:
    """The events waiting for the job's client, taken."""
    drained = []
    while not job.events.queue.empty():
        drained.append(job.events.queue.get_nowait())
    return drained


def events(job: Job) -> list[str]:
    """The kinds of the events waiting for the job's client."""
    return ["revoked" if e is None else e.WhichOneof("kind") for e in _drain(job)]


def end_of(job: Job) -> common_pb2.JobEnd:
    """The job's end, which must be its one end among the events waiting."""
    ends = [e.end for e in _drain(job) if e is not None and e.WhichOneof("kind") == "end"]
    assert len(ends) == 1, ends
    return ends[0]


async def next_event(job: Job, timeout_s: float = 2) -> client_pb2.JobEvent:
    event = await asyncio.wait_for(job.events.next(), timeout_s)
    assert event is not None
    return event


async def until(predicate: Callable[[], object], timeout_s: float = 2) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "the condition never came"
        await asyncio.sleep(0.01)


def success(job_id: str) -> common_pb2.JobEnd:
    ref = common_pb2.ArtifactRef(inline=b"r", size=1)
    return common_pb2.JobEnd(job_id=job_id, success=common_pb2.JobSuccess(result=ref))


def assert_released(hub: Parts, *sessions: WorkerSession) -> None:
    """Every input unpinned as often as pinned, no job queued, no slot held."""
    assert hub.store.pins == hub.store.unpins
    assert hub.board.queued == 0
    assert all(not session.jobs for session in sessions)


@pytest.fixture
def short_stop_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_module, "STOP_GRACE_S", 0.05)


def test_submit_route_end() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        job = hub.submit("j")
        assert job.state is JobState.RUNNING and job.session is session
        assert holding(session) == {"j": job} and sent(session) == ["job j"]
        assert hub.store.pins[INPUT] == 1 and hub.store.unpins[INPUT] == 0
        hub.board.output(job, common_pb2.JobOutput(job_id="j", chunk=b"xy"))
        hub.board.worker_ended(job, success("j"))
        assert job.state is JobState.ENDED and job.session is None
        assert events(job) == ["output", "end"]  # the end behind the output, never instead
        assert_released(hub, session)

    run(scenario)


def test_a_job_waits_for_a_slot_and_goes_when_one_frees() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect(concurrency=1, prefetch=1)
        first, second, third = (hub.submit(j) for j in "abc")
        assert sent(session) == ["job a", "job b"]
        assert third.state is JobState.QUEUED and events(third) == ["queued"]
        hub.board.worker_ended(first, success("a"))
        assert third.state is JobState.RUNNING and sent(session) == ["job c"]
        assert events(third) == ["started"]  # it was queued: its client learns it left
        for job in (second, third):
            hub.board.worker_ended(job, success(job.job_id))
        assert_released(hub, session)

    run(scenario)


def test_ending_twice_is_one_end() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        job = hub.submit("j", timeout_s=60)
        [deadline] = job.timers
        hub.board.worker_ended(job, success("j"))
        hub.board.session_lost(session, "gone")
        assert end_of(job).WhichOneof("outcome") == "success"
        assert deadline.cancelled() and job.timers == []
        hub.board.withdraw(job)  # its client, having the end, leaves
        assert events(job) == [] and sent(session) == ["job j"]
        assert hub.store.unpins[INPUT] == 1
        assert_released(hub, session)

    run(scenario)


def test_an_end_after_a_failure_changes_nothing() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        job = hub.submit("j")
        assert sent(session) == ["job j"]
        hub.board.session_lost(session, "the worker left")
        hub.board.worker_ended(job, success("j"))
        assert end_of(job).failure.type == "WorkerLost"
        assert_released(hub, session)

    run(scenario)


def test_withdraw_while_queued_forgets_the_job() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        running, queued = hub.submit("r"), hub.submit("q")
        hub.board.withdraw(queued)
        assert queued.state is JobState.ENDED and hub.board.queued == 0
        assert hub.store.unpins[INPUT] == 1
        hub.board.worker_ended(running, success("r"))
        assert sent(session) == ["job r"]  # the withdrawn job never went out
        assert_released(hub, session)

    run(scenario)


def test_withdraw_while_running_cancels_on_the_worker_which_frees_the_slot() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        job, behind = hub.submit("j"), hub.submit("k")
        sent(session)
        hub.board.withdraw(job)
        assert sent(session) == ["cancel j"]
        assert job.state is JobState.STOPPING and holding(session) == {"j": job}
        assert behind.state is JobState.QUEUED  # the slot stays held until the worker stops
        assert hub.store.unpins[INPUT] == 1  # its inputs are no longer needed
        hub.board.worker_ended(job, success("j"))
        assert job.state is JobState.ENDED and events(job) == []  # its client is gone
        assert behind.state is JobState.RUNNING
        hub.board.worker_ended(behind, success("k"))
        assert_released(hub, session)

    run(scenario)


def test_a_worker_that_ignores_a_cancel_loses_the_slot_anyway(short_stop_grace: None) -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        job, behind = hub.submit("j"), hub.submit("k")
        hub.board.withdraw(job)
        await until(lambda: behind.state is JobState.RUNNING)
        assert job.state is JobState.ENDED and "j" not in holding(session)
        hub.board.worker_ended(behind, success("k"))
        assert_released(hub, session)

    run(scenario)


def test_timeout_while_queued_fails_the_job() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        running, waiting = hub.submit("r"), hub.submit("w", timeout_s=0.05)
        assert (await next_event(waiting)).WhichOneof("kind") == "queued"
        end = (await next_event(waiting)).end
        assert (
            end.failure.type == "JobTimeout" and "waited for a worker slot" in end.failure.message
        )
        assert waiting.state is JobState.ENDED and hub.board.queued == 0
        hub.board.worker_ended(running, success("r"))
        assert sent(session) == ["job r"]
        assert_released(hub, session)

    run(scenario)


def test_timeout_while_running_is_the_workers_then_the_hub_gives_up(
    short_stop_grace: None,
) -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        job, behind = hub.submit("j", timeout_s=0.05), hub.submit("k")
        sent(session)
        end = (await next_event(job)).end
        assert end.failure.type == "JobTimeout" and "did not stop" in end.failure.message
        assert sent(session) == ["cancel j", "job k"]  # the freed slot goes to the next job
        hub.board.worker_ended(behind, success("k"))
        assert_released(hub, session)

    run(scenario)


def test_the_job_sent_carries_what_is_left_of_its_timeout() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        hub.submit("j", timeout_s=60)
        message = session.outbox.get_nowait()
        assert message is not None and 0 < message.job.spec.timeout_s <= 60

    run(scenario)


def test_session_lost_fails_its_running_jobs_and_unpins() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect(concurrency=2)
        running, stopping = hub.submit("r"), hub.submit("s")
        assert sent(session) == ["job r", "job s"]
        hub.board.withdraw(stopping)
        hub.registry.remove(session)
        hub.board.session_lost(session, "the worker left during the job")
        end = end_of(running)
        assert end.failure.type == "WorkerLost" and "left during" in end.failure.message
        assert events(stopping) == []
        assert running.state is stopping.state is JobState.ENDED
        assert_released(hub, session)

    run(scenario)


def test_queued_jobs_fail_when_no_worker_comes() -> None:
    async def scenario() -> None:
        hub = Parts(no_worker_grace_s=0.05)
        job = hub.submit("j")
        assert (await next_event(job)).WhichOneof("kind") == "queued"
        end = (await next_event(job)).end
        assert (end.failure.type, end.reason) == ("NoWorker", common_pb2.END_REASON_NO_WORKER)
        assert_released(hub)

    run(scenario)


def test_a_worker_connecting_takes_the_queued_jobs() -> None:
    async def scenario() -> None:
        hub = Parts()
        job = hub.submit("j")
        assert job.state is JobState.QUEUED
        session = await hub.connect()
        assert job.state is JobState.RUNNING and sent(session) == ["job j"]

    run(scenario)


def test_a_received_job_waits_for_a_worker_pinned_then_goes_or_ends_listed() -> None:
    async def scenario() -> None:
        hub = Parts()

        def receive(job_id: str, wait_s: float) -> Job:
            job = Job(job_id, common_pb2.JobSpec(call={}), JobEvents(hub.unread), inputs=[INPUT])
            hub.board.receive(job, wait_s, lambda: "nobody came")
            return job

        at_once, patient = receive("now", 0), receive("later", 5)
        assert end_of(at_once).reason == common_pb2.END_REASON_NO_WORKER
        assert patient.state is JobState.WAITING and hub.store.pins[INPUT] == 2
        session = await hub.connect()
        assert patient.state is JobState.RUNNING and sent(session) == ["job later"]
        hub.board.worker_ended(patient, success("later"))
        hub.registry.drain(session)  # no worker left that may run it
        short = receive("short", 0.05)
        await until(lambda: short.state is JobState.ENDED)
        assert end_of(short).failure.message == "nobody came"
        assert [job.reason for job in hub.board.recent][-1] == common_pb2.END_REASON_NO_WORKER
        assert_released(hub, session)

    run(scenario)


def test_a_worker_that_does_not_read_fails_the_job() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        while not session.outbox.full():
            session.outbox.put_nowait(worker_pb2.HubMessage())
        job = hub.submit("j")
        end = end_of(job)
        assert end.failure.type == "WorkerNotReading"
        assert end.reason == common_pb2.END_REASON_WORKER_LOST
        assert_released(hub, session)

    run(scenario)


def test_results_past_the_unread_limit_fail_the_job_which_keeps_its_slot() -> None:
    async def scenario() -> None:
        hub = Parts(unread_max_bytes=4)
        session = await hub.connect()
        job = hub.submit("j")
        assert hub.board.output(job, common_pb2.JobOutput(job_id="j", chunk=b"abc"))
        assert not hub.board.output(job, common_pb2.JobOutput(job_id="j", chunk=b"de"))
        end = end_of(job)
        assert (end.failure.type, end.reason) == (
            "UnreadResultsLimit",
            common_pb2.END_REASON_CANCELLED,
        )
        assert hub.unread.held_bytes == 0  # the output it held was dropped with it
        assert job.state is JobState.STOPPING and holding(session) == {"j": job}
        hub.board.worker_ended(job, success("j"))
        assert job.state is JobState.ENDED
        assert_released(hub, session)

    run(scenario)


def test_a_job_past_the_unread_limit_is_stopped_on_its_worker_which_frees_the_slot(
    short_stop_grace: None,
) -> None:
    async def scenario() -> None:
        hub = Parts(unread_max_bytes=4)
        session = await hub.connect()
        job, behind = hub.submit("j"), hub.submit("k")
        assert not hub.board.output(job, common_pb2.JobOutput(job_id="j", chunk=b"abcde"))
        assert sent(session) == ["job j", "cancel j"]
        # A worker that goes on with it regardless loses the slot after the stop grace.
        await until(lambda: behind.state is JobState.RUNNING)
        assert job.state is JobState.ENDED and "j" not in holding(session)
        hub.board.worker_ended(behind, success("k"))
        assert_released(hub, session)

    run(scenario)


def test_a_cancel_ends_a_queued_job_at_once_and_a_running_one_with_its_workers_end(
    short_stop_grace: None,
) -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        running, queued = hub.submit("r"), hub.submit("q")
        sent(session)
        hub.board.cancel(queued)
        assert end_of(queued).reason == common_pb2.END_REASON_CANCELLED
        hub.board.cancel(running)
        assert sent(session) == ["cancel r"] and running.state is JobState.RUNNING
        stopped = common_pb2.JobEnd(
            job_id="r", reason=common_pb2.END_REASON_CANCELLED, logs=b"before the cancel\n"
        )
        stopped.failure.type = "JobCancelled"
        hub.board.worker_ended(running, stopped)
        assert end_of(running).logs == b"before the cancel\n"  # the worker's end, as it came
        assert_released(hub, session)

        silent = hub.submit("s")  # its worker never confirms: the hub ends it after a grace
        hub.board.cancel(silent)
        await until(lambda: silent.state is JobState.ENDED)
        assert end_of(silent).reason == common_pb2.END_REASON_CANCELLED
        assert_released(hub, session)

    run(scenario)


def test_progress_and_output_of_an_ended_job_are_dropped() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        job = hub.submit("j")
        hub.board.withdraw(job)
        hub.board.progress(job, common_pb2.JobProgress(job_id="j", done=1, total=2))
        assert not hub.board.output(job, common_pb2.JobOutput(job_id="j", chunk=b"x"))
        assert events(job) == [] and job.progress == (0, 0)
        hub.board.worker_ended(job, success("j"))
        assert_released(hub, session)

    run(scenario)


def test_info_jobs_need_no_slot() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        busy, waiting, info = hub.submit("b"), hub.submit("w"), hub.submit("i", info=True)
        assert sent(session) == ["job b", "job i"]
        assert waiting.state is JobState.QUEUED
        for job in (info, busy, waiting):
            hub.board.worker_ended(job, success(job.job_id))
        assert_released(hub, session)

    run(scenario)


def test_a_revoked_client_sees_the_stream_stop_then_the_job_is_withdrawn() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        job = hub.submit("j")
        hub.board.output(job, common_pb2.JobOutput(job_id="j", chunk=b"xy"))
        job.events.interrupt(None)
        assert events(job) == ["revoked"] and hub.unread.held_bytes == 0
        hub.board.withdraw(job)
        assert sent(session) == ["job j", "cancel j"]

    run(scenario)


async def _worker_ends_it(hub: Parts, session: WorkerSession, job: Job) -> None:
    hub.board.worker_ended(job, success(job.job_id))


async def _withdrawn_then_worker_ends_it(hub: Parts, session: WorkerSession, job: Job) -> None:
    hub.board.withdraw(job)
    hub.board.worker_ended(job, success(job.job_id))


async def _withdrawn_then_worker_leaves(hub: Parts, session: WorkerSession, job: Job) -> None:
    hub.board.withdraw(job)
    hub.board.session_lost(session, "gone")


async def _worker_leaves(hub: Parts, session: WorkerSession, job: Job) -> None:
    sent(session)  # it received the job
    hub.board.session_lost(session, "gone")


async def _withdrawn_then_hub_gives_up(hub: Parts, session: WorkerSession, job: Job) -> None:
    hub.board.withdraw(job)
    await until(lambda: job.state is JobState.ENDED)


async def _result_too_big_then_worker_ends_it(hub: Parts, session: WorkerSession, job: Job) -> None:
    hub.board.output(job, common_pb2.JobOutput(job_id=job.job_id, chunk=b"x" * 2048))
    hub.board.worker_ended(job, success(job.job_id))


PATHS = [
    _worker_ends_it,
    _withdrawn_then_worker_ends_it,
    _withdrawn_then_worker_leaves,
    _worker_leaves,
    _withdrawn_then_hub_gives_up,
    _result_too_big_then_worker_ends_it,
]


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.__name__.strip("_"))
def test_every_path_ends_once_unpins_once_and_frees_the_slot(
    path: Callable[[Parts, WorkerSession, Job], Awaitable[None]], short_stop_grace: None
) -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect()
        job = hub.submit("j", inputs=(INPUT, SHARED))
        other = hub.submit("other", inputs=(SHARED,))  # shares an input; waits for the slot
        await path(hub, session, job)
        assert job.state is JobState.ENDED and "j" not in holding(session)
        assert len([e for e in events(job) if e == "end"]) <= 1
        assert hub.store.unpins == Counter({INPUT: 1, SHARED: 1})
        assert other.state is not JobState.ENDED  # and its pin of the shared input holds:
        assert hub.store.pins[SHARED] - hub.store.unpins[SHARED] == 1

    run(scenario)


def test_a_job_never_submitted_has_nothing_to_end() -> None:
    async def scenario() -> None:
        hub = Parts()
        job = Job("j", common_pb2.JobSpec(call={}), JobEvents(hub.unread), inputs=[INPUT])
        hub.board.withdraw(job)
        assert job.state is JobState.NEW and hub.store.unpins == Counter()

    run(scenario)
