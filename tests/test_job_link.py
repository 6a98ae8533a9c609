"""The worker's jobs across sessions (worker.job_link.JobLink), without gRPC or executors:
what a new session's hello lists, which ends go again, which jobs stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from giskard import end_reasons
from giskard.errors import EndReason
from giskard.rpc.v1 import common_pb2, worker_pb2
from giskard.worker import job_link
from giskard.worker.job_link import JobLink, Outbox


class Jobs:
    """Stands for JobExecution: each job emits what the test tells it to, when it says."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.lost: list[tuple[str, str]] = []
        self.waiting: list[str] = []
        self._steps: dict[str, asyncio.Queue[worker_pb2.WorkerMessage | None]] = {}

    async def run(self, job: worker_pb2.Job, session: Any, emit: Any) -> None:
        steps = self._steps.setdefault(job.job_id, asyncio.Queue())
        while (message := await steps.get()) is not None:
            await emit(message)

    def step(self, job_id: str, message: worker_pb2.WorkerMessage | None) -> None:
        self._steps.setdefault(job_id, asyncio.Queue()).put_nowait(message)

    def end(self, job_id: str) -> None:
        """The job ends: its end, then nothing more."""
        self.step(job_id, end(job_id))
        self.step(job_id, None)

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)

    def drain(self, job_id: str, why: str) -> None:
        self.cancelled.append(job_id)

    def lose(self, job_id: str, why: str) -> None:
        self.lost.append((job_id, why))


def end(job_id: str) -> worker_pb2.WorkerMessage:
    return worker_pb2.WorkerMessage(end=common_pb2.JobEnd(job_id=job_id))


def output(job_id: str) -> worker_pb2.WorkerMessage:
    return worker_pb2.WorkerMessage(output=common_pb2.JobOutput(job_id=job_id, chunk=b"x"))


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def until(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Wait for `condition` (a timer's effect) to hold."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


async def attach(link: JobLink, reattached: tuple[str, ...] = (), grace_s: float = 0.0) -> Outbox:
    outbox: Outbox = asyncio.Queue(maxsize=16)
    link.attach(outbox, stub=None, metadata=(), reattached=reattached, grace_s=grace_s)  # type: ignore[arg-type]
    return outbox


def taken(outbox: Outbox) -> list[str]:
    out = []
    while not outbox.empty():
        message = outbox.get_nowait()
        assert message is not None
        kind = message.WhichOneof("kind")
        out.append(f"{kind} {getattr(message, kind).job_id}")
    return out


def start(link: JobLink, *job_ids: str) -> None:
    for job_id in job_ids:
        link.start(worker_pb2.Job(job_id=job_id))


def test_an_end_lost_with_its_session_goes_again_if_the_hub_reattaches_the_job() -> None:
    async def scenario() -> None:
        jobs = Jobs()
        link = JobLink(jobs, reattach_grace_s=30)  # type: ignore[arg-type]
        first = await attach(link)
        start(link, "a", "b", "c")
        jobs.end("a")
        await settle()
        assert taken(first) == ["end a"]  # written, but perhaps never read by the hub
        link.detach(first)
        jobs.end("b")  # ends while no session is there: kept, not waited for
        await settle()
        assert link.held() == ["c", "a", "b"]
        second = await attach(link, reattached=("b", "c"))
        await settle()
        assert taken(second) == ["end b"]  # "a" ended for the hub: forgotten
        assert jobs.cancelled == []
        jobs.end("c")
        await settle()
        assert taken(second) == ["end c"]
        link.detach(second)
        assert link.held() == ["b", "c"]  # until the next welcome says the hub has them
        await link.close()

    run(scenario)


def test_jobs_the_hub_did_not_reattach_stop() -> None:
    async def scenario() -> None:
        jobs = Jobs()
        link = JobLink(jobs, reattach_grace_s=30)  # type: ignore[arg-type]
        first = await attach(link)
        start(link, "a", "b")
        link.detach(first)
        await attach(link, reattached=("a",))
        assert jobs.cancelled == ["b"]
        await link.close()

    run(scenario)


def test_what_a_job_emits_while_no_session_is_there_waits_for_the_next() -> None:
    async def scenario() -> None:
        jobs = Jobs()
        link = JobLink(jobs, reattach_grace_s=30)  # type: ignore[arg-type]
        first = await attach(link)
        start(link, "a")
        link.detach(first)
        progress = common_pb2.JobProgress(job_id="a", done=1, total=2)
        jobs.step("a", worker_pb2.WorkerMessage(progress=progress))
        await settle()
        second = await attach(link, reattached=("a",))
        await settle()
        assert taken(first) == [] and taken(second) == ["progress a"]
        await link.close()

    run(scenario)


def test_a_job_that_streamed_part_of_a_result_on_a_dropped_session_is_not_offered() -> None:
    async def scenario() -> None:
        jobs = Jobs()
        link = JobLink(jobs, reattach_grace_s=30)  # type: ignore[arg-type]
        first = await attach(link)
        start(link, "a", "b")
        jobs.step("a", output("a"))
        await settle()
        link.detach(first)
        assert [job_id for job_id, _ in jobs.lost] == ["a"] and link.held() == ["b"]
        await link.close()

    run(scenario)


def test_kept_ends_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_link, "KEPT_ENDS", 2)

    async def scenario() -> None:
        jobs = Jobs()
        link = JobLink(jobs, reattach_grace_s=30)  # type: ignore[arg-type]
        start(link, "a", "b", "c")
        for job_id in "abc":
            jobs.end(job_id)
        await settle()
        assert link.held() == ["b", "c"]

    run(scenario)


def test_jobs_stopped_when_the_grace_ends_are_lost_and_not_offered_again() -> None:
    async def scenario() -> None:
        jobs = Jobs()
        link = JobLink(jobs, reattach_grace_s=0.05)  # type: ignore[arg-type]
        first = await attach(link)
        start(link, "a")
        link.detach(first)
        await until(lambda: jobs.lost)
        assert jobs.cancelled == []
        assert jobs.lost == [("a", "the connection to the hub did not come back within 0.05 s")]
        jobs.end("a")  # its end, as the executor reports the stop
        await settle()
        assert link.held() == []  # the hub has failed it already: its end is nobody's
        await link.close()

    run(scenario)


def test_an_end_sent_again_stays_kept_until_the_next_welcome() -> None:
    async def scenario() -> None:
        jobs = Jobs()
        link = JobLink(jobs, reattach_grace_s=30)  # type: ignore[arg-type]
        first = await attach(link)
        start(link, "a")
        link.detach(first)
        jobs.end("a")
        await settle()
        second = await attach(link, reattached=("a",))
        await settle()
        assert taken(second) == ["end a"]  # in the outbox, perhaps never written
        link.detach(second)
        assert link.held() == ["a"]
        third = await attach(link, reattached=("a",))
        await settle()
        assert taken(third) == ["end a"]
        link.detach(third)
        await attach(link)  # the hub no longer waits for it: forgotten
        assert link.held() == []
        await link.close()

    run(scenario)


def test_more_ends_to_send_again_than_the_outbox_holds() -> None:
    async def scenario() -> None:
        jobs = Jobs()
        link = JobLink(jobs, reattach_grace_s=0.2)  # type: ignore[arg-type]
        first = await attach(link)
        ended = [f"e{i:02}" for i in range(20)]
        start(link, *ended, "z")
        link.detach(first)
        for job_id in ended:
            jobs.end(job_id)
        await settle()
        # Nobody reads this session's outbox: the re-send waits, and the session drops.
        second = asyncio.ensure_future(attach(link, reattached=(*ended, "z")))
        await settle()
        jobs.end("z")  # another job ends meanwhile
        await settle()
        assert sorted(link.held()) == [*ended, "z"]
        outbox = second.result() if second.done() else None
        assert outbox is not None, "attach waits for the outbox"
        sent: list[str] = []
        for _ in range(5):  # the re-send goes on as the outbox is read
            sent += taken(outbox)
            await settle()
        assert sorted(sent) == [f"end {job_id}" for job_id in (*ended, "z")]
        start(link, "y")
        link.detach(outbox)
        await until(lambda: jobs.lost)  # the timer of the second drop fired
        assert [job_id for job_id, _ in jobs.lost] == ["y"]
        await link.close()

    run(scenario)


def test_a_reattached_job_the_worker_no_longer_holds_ends_as_lost() -> None:
    async def scenario() -> None:
        jobs = Jobs()
        link = JobLink(jobs, reattach_grace_s=30)  # type: ignore[arg-type]
        second = await attach(link, reattached=("gone",))
        await settle()
        [message] = [second.get_nowait() for _ in range(second.qsize())]
        assert message is not None
        assert message.end.job_id == "gone"
        assert message.end.reason == end_reasons.to_proto(EndReason.WORKER_LOST)
        assert message.end.failure.message == "the worker no longer holds the job"
        link.detach(second)
        assert link.held() == ["gone"]  # kept like any end, until the hub has it
        await link.close()

    run(scenario)


def test_the_grace_is_the_one_the_hub_said_in_its_welcome() -> None:
    async def scenario() -> None:
        jobs = Jobs()
        link = JobLink(jobs, reattach_grace_s=30)  # type: ignore[arg-type]
        first = await attach(link, grace_s=0.05)
        start(link, "a")
        link.detach(first)
        await until(lambda: jobs.lost)
        assert [job_id for job_id, _ in jobs.lost] == ["a"]
        await link.close()

    run(scenario)


def test_an_end_kept_again_for_the_same_job_is_counted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    size = end("a").ByteSize()
    monkeypatch.setattr(job_link, "KEPT_END_BYTES", 2 * size)

    async def scenario() -> None:
        jobs = Jobs()
        link = JobLink(jobs, reattach_grace_s=30)  # type: ignore[arg-type]
        for job_id in ("a", "a", "b"):  # "a" twice: a kept end overwritten
            start(link, job_id)
            jobs.end(job_id)
            await settle()
        assert link.held() == ["a", "b"]
        await link.close()

    run(scenario)
