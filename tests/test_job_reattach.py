"""The hub's side of a connection that drops (jobs.JobBoard.detach and reattach), transition by
transition, without gRPC: the jobs keep their state and slots for the grace, go on with the
worker's next session if it still holds them, and fail as worker lost otherwise."""

from __future__ import annotations

import asyncio

from test_job_lifecycle import (
    INPUT,
    Parts,
    assert_released,
    client_id,
    end_of,
    events,
    holding,
    run,
    sent,
    success,
    until,
)

from giskard.hub.job import Job, JobState
from giskard.hub.registry import WorkerSession
from giskard.rpc.v1 import common_pb2


def session_of(name: str, pid: int, concurrency: int = 1) -> WorkerSession:
    info = common_pb2.WorkerInfo(name=name, pid=pid, hostname="h", worker_id=f"w{pid}")
    return WorkerSession(info=info, peer="p", concurrency=concurrency)


async def connect(hub: Parts, session: WorkerSession, held: tuple[str, ...] = ()) -> list[str]:
    """As the worker service registers a session: reattach, then join the registry."""
    reattached = hub.board.reattach(session, hub.dispatch_ids(held))
    hub.registry.add(session)
    return [client_id(dispatch_id) for dispatch_id in reattached]


async def drop(hub: Parts, session: WorkerSession) -> None:
    """The session's connection drops, as the worker service sees it, after the worker received
    what the hub sent: its jobs are detached first, then it leaves the registry."""
    sent(session)
    hub.board.detach(session, "the worker disconnected during the job")
    hub.registry.remove(session)


async def dropped_with_a_job(hub: Parts) -> tuple[WorkerSession, Job]:
    """A worker "a" that ran job "j" when its connection dropped."""
    old = session_of("a", 1)
    await connect(hub, old)
    job = hub.submit("j")
    await drop(hub, old)
    return old, job


def worker_lost(end: common_pb2.JobEnd) -> str:
    assert (end.reason, end.failure.type) == (common_pb2.END_REASON_WORKER_LOST, "WorkerLost")
    return end.failure.message


def test_a_dropped_session_keeps_its_jobs_and_slots_until_the_grace() -> None:
    async def scenario() -> None:
        hub = Parts(reattach_grace_s=0.1)
        old, job = await dropped_with_a_job(hub)
        assert job.state is JobState.RUNNING and holding(old) == {"j": job}
        assert events(job) == [] and hub.store.unpins[INPUT] == 0
        await until(lambda: job.state is JobState.ENDED)
        assert "did not come back within 0.1 s" in worker_lost(end_of(job))
        assert_released(hub, old)

    run(scenario)


def test_the_new_session_takes_the_jobs_it_holds_the_others_fail() -> None:
    async def scenario() -> None:
        hub = Parts(reattach_grace_s=0.1)
        old = session_of("a", 1, concurrency=2)
        await connect(hub, old)
        kept, dropped = hub.submit("kept"), hub.submit("dropped")
        await drop(hub, old)
        waiting = hub.submit("waiting")  # queued: no worker is connected
        new = session_of("a", 1, concurrency=2)
        assert await connect(hub, new, held=("kept", "never-sent")) == ["kept"]
        assert kept.session is new and kept.state is JobState.RUNNING and not old.jobs
        assert "came back without the job" in worker_lost(end_of(dropped))
        # The reattached job holds one of the new session's two slots: one job more goes.
        assert sent(new) == ["job waiting"] and set(holding(new)) == {"kept", "waiting"}
        await asyncio.sleep(0.2)  # past the grace: its timer was stopped
        assert kept.state is JobState.RUNNING and events(kept) == []
        for job in (kept, waiting):
            hub.board.worker_ended(job, success(job.job_id))
        assert end_of(kept).WhichOneof("outcome") == "success"
        assert_released(hub, old, new)

    run(scenario)


def test_a_job_with_part_of_its_result_at_the_hub_is_not_reattached() -> None:
    async def scenario() -> None:
        hub = Parts()
        old = session_of("a", 1)
        await connect(hub, old)
        job = hub.submit("j")
        hub.board.output(job, common_pb2.JobOutput(job_id="j", chunk=b"xy"))
        await drop(hub, old)
        new = session_of("a", 1)
        assert await connect(hub, new, held=("j",)) == []
        assert "dropped while it sent the job's result" in worker_lost(end_of(job))
        assert_released(hub, old, new)

    run(scenario)


def test_a_job_cancelled_while_its_worker_was_away_is_cancelled_again_on_its_return() -> None:
    async def scenario() -> None:
        hub = Parts()
        old, job = await dropped_with_a_job(hub)
        hub.board.withdraw(job)
        assert job.state is JobState.STOPPING
        new = session_of("a", 1)
        assert await connect(hub, new, held=("j",)) == ["j"]
        assert sent(new) == ["cancel j"]
        cancelled = common_pb2.JobEnd(job_id="j", reason=common_pb2.END_REASON_CANCELLED)
        hub.board.worker_ended(job, cancelled)
        assert job.state is JobState.ENDED
        assert_released(hub, old, new)

    run(scenario)


def test_a_session_replacing_one_not_noticed_dead_takes_its_jobs() -> None:
    async def scenario() -> None:
        hub = Parts()
        old = session_of("a", 1)
        await connect(hub, old)
        job = hub.submit("j")
        assert sent(old) == ["job j"]
        new = session_of("a", 1)
        assert await connect(hub, new, held=("j",)) == ["j"]
        assert job.session is new and hub.registry.in_connection_order == [new]
        hub.board.detach(old, "gone")  # its stream ends later: nothing is left to it
        hub.board.worker_ended(job, success("j"))
        assert end_of(job).WhichOneof("outcome") == "success"
        assert_released(hub, old, new)

    run(scenario)


def test_another_worker_under_the_name_takes_nothing() -> None:
    async def scenario() -> None:
        hub = Parts()
        old = session_of("a", 1)
        await connect(hub, old)
        job = hub.submit("j")
        other = session_of("a", 2)
        other.info.hostname = "elsewhere"
        assert hub.board.reattach(other, ("j",)) == []
        assert job.session is old and job.state is JobState.RUNNING

    run(scenario)


def test_a_stopping_hub_fails_the_jobs_waiting_for_their_worker() -> None:
    async def scenario() -> None:
        hub = Parts()
        old, job = await dropped_with_a_job(hub)
        hub.board.closing()
        assert "hub stopped" in worker_lost(end_of(job))
        assert_released(hub, old)

    run(scenario)


def test_without_a_grace_a_dropped_session_fails_its_jobs_at_once() -> None:
    async def scenario() -> None:
        hub = Parts(reattach_grace_s=0)
        old, job = await dropped_with_a_job(hub)
        assert "disconnected during the job" in worker_lost(end_of(job))
        assert_released(hub, old)

    run(scenario)


def test_a_job_its_client_cancels_while_its_worker_is_away_is_cancelled_on_its_return() -> None:
    async def scenario() -> None:
        hub = Parts()
        old, job = await dropped_with_a_job(hub)
        hub.board.cancel(job)  # its client waits for the worker's end
        assert job.state is JobState.RUNNING
        new = session_of("a", 1)
        assert await connect(hub, new, held=("j",)) == ["j"]
        assert sent(new) == ["cancel j"]
        cancelled = common_pb2.JobEnd(job_id="j", reason=common_pb2.END_REASON_CANCELLED)
        hub.board.worker_ended(job, cancelled)
        assert end_of(job).reason == common_pb2.END_REASON_CANCELLED
        assert_released(hub, old, new)

    run(scenario)


def test_jobs_a_dropped_session_never_received_are_queued_again_at_the_head() -> None:
    async def scenario() -> None:
        hub = Parts()
        old = session_of("a", 1, concurrency=2)
        await connect(hub, old)
        received, unsent = hub.submit("received"), hub.submit("unsent")
        hub.registry.remove(old)  # no other worker: later jobs wait at the hub
        later = hub.submit("later")
        old.outbox.get_nowait()  # the worker got the first job's message only
        hub.board.detach(old, "the worker disconnected during the job")
        assert unsent.state is JobState.QUEUED and unsent.session is None
        assert received.state is JobState.RUNNING and holding(old) == {"received": received}
        new = session_of("a", 1, concurrency=2)
        assert await connect(hub, new, held=("received",)) == ["received"]
        # The job that never left goes first, ahead of the one queued after it was sent.
        assert sent(new) == ["job unsent"] and later.state is JobState.QUEUED
        assert events(unsent) == [] and hub.store.unpins[INPUT] == 0

    run(scenario)
