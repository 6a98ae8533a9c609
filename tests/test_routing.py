"""Routing, alone: which queued job goes to which worker, as a pure function of the queue and
the sessions; and the registry's names and the board's wait for a worker, without gRPC."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field

import pytest

from giskard.hub.artifacts import ArtifactStore
from giskard.hub.job import Job, JobState
from giskard.hub.job_events import JobEvents, UnreadResults
from giskard.hub.jobs import JobBoard
from giskard.hub.registry import NameTaken, WorkerRegistry, WorkerSession
from giskard.hub.routing import SPREAD, Constraint, active_session, may_run, route
from giskard.rpc.v1 import common_pb2


@dataclass
class QueuedJob:
    name: str
    takes_a_slot: bool = True
    constraint: Constraint = field(default_factory=Constraint)
    inputs: tuple[str, ...] = ()


@dataclass
class Session:
    name: str
    free_slots: int = 1
    draining: bool = False
    paused: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    prefetch: int = 0
    cached: dict[str, int] = field(default_factory=dict)  # input -> size the hub sent it

    @property
    def takes_jobs(self) -> bool:
        return not (self.draining or self.paused)

    @property
    def will_take_jobs(self) -> bool:
        return not self.draining

    def cached_bytes(self, inputs: tuple[str, ...]) -> int:
        return sum(self.cached.get(address, 0) for address in inputs)


def jobs(*names: str) -> list[QueuedJob]:
    """Jobs named 'i…' are info jobs; the others take a slot."""
    return [QueuedJob(name, takes_a_slot=not name.startswith("i")) for name in names]


def plan(
    queued: list[QueuedJob], sessions: list[Session], policy: str = "latest"
) -> list[tuple[str, str]]:
    return [(job.name, session.name) for job, session in route(queued, sessions, policy)]


def asking(name: str, worker: str = "", takes_a_slot: bool = True, **labels: str) -> QueuedJob:
    return QueuedJob(name, takes_a_slot, Constraint.of(worker, labels))


def test_no_worker_no_routing() -> None:
    assert plan(jobs("a"), []) == []
    assert plan(jobs("a"), [Session("w", draining=True)]) == []


def test_the_latest_connected_worker_gets_the_jobs_and_standbys_none() -> None:
    sessions = [Session("old", free_slots=5), Session("new", free_slots=5)]
    assert plan(jobs("a", "b"), sessions) == [("a", "new"), ("b", "new")]


def test_a_draining_worker_gets_none_and_the_previous_one_is_active() -> None:
    sessions = [Session("old"), Session("new", draining=True)]
    assert plan(jobs("a"), sessions) == [("a", "old")]
    assert active_session(sessions) is sessions[0]


def test_as_many_jobs_as_free_slots_in_queue_order() -> None:
    assert plan(jobs("a", "b", "c"), [Session("w", free_slots=2)]) == [("a", "w"), ("b", "w")]
    assert plan(jobs("a"), [Session("w", free_slots=0)]) == []


def test_info_jobs_need_no_slot_and_pass_a_job_that_waits() -> None:
    # The board lists the jobs that need no slot first (routing stops at the first job that
    # needs a slot once none is left).
    queued = jobs("i1", "i2", "a", "b", "c")
    assert plan(queued, [Session("w", free_slots=1)]) == [("i1", "w"), ("i2", "w"), ("a", "w")]
    assert plan(queued, [Session("w", free_slots=0)]) == [("i1", "w"), ("i2", "w")]


def test_routing_changes_nothing_it_is_given() -> None:
    queued, sessions = jobs("a", "i", "b"), [Session("w", free_slots=1)]
    before = copy.deepcopy((queued, sessions))
    route(queued, sessions)
    assert (queued, sessions) == before


def test_a_sessions_free_slots_count_the_jobs_that_hold_one() -> None:
    session = WorkerSession(info=common_pb2.WorkerInfo(), peer="p", concurrency=2, prefetch=1)
    assert session.free_slots == 3
    unread = UnreadResults()
    for job_id, kind in (("a", "call"), ("i", "info"), ("b", "call")):
        spec = common_pb2.JobSpec(**{kind: {}})
        session.jobs[job_id] = Job(job_id, spec, JobEvents(unread))
    assert session.free_slots == 1  # the info job holds none
    assert route([QueuedJob("c"), QueuedJob("d")], [session]) == [(QueuedJob("c"), session)]


def test_a_job_asking_for_a_name_goes_to_that_worker_even_if_it_is_not_the_latest() -> None:
    sessions = [Session("cpu"), Session("gpu")]
    assert plan([asking("a", worker="cpu"), asking("b")], sessions) == [("a", "cpu"), ("b", "gpu")]


def test_a_job_asking_for_labels_goes_to_the_latest_worker_that_has_them_all() -> None:
    sessions = [
        Session("old-a100", free_slots=5, labels={"gpu": "a100", "zone": "eu"}),
        Session("new-a100", free_slots=5, labels={"gpu": "a100"}),
        Session("newest", free_slots=5, labels={"gpu": "t4"}),
    ]
    queued = [asking("a", gpu="a100"), asking("b", gpu="a100", zone="eu"), asking("c")]
    assert plan(queued, sessions) == [("a", "new-a100"), ("b", "old-a100"), ("c", "newest")]


def test_a_job_no_worker_may_run_waits_and_holds_back_no_other() -> None:
    sessions = [Session("w", free_slots=1)]
    assert plan(
        [asking("a", worker="nobody"), asking("b"), asking("i", worker="x", takes_a_slot=False)],
        sessions,
    ) == [("b", "w")]
    assert not may_run(Constraint.of("nobody"), sessions)
    assert may_run(Constraint.of("w"), sessions)
    assert not may_run(Constraint.of("w"), [Session("w", draining=True)])
    # A paused worker gets no job now, but the job waits for it rather than fail.
    assert plan(jobs("a"), [Session("w", paused=True)]) == []
    assert may_run(Constraint.of("w"), [Session("w", paused=True)])


def test_by_default_a_job_waits_for_the_latest_workers_slot_not_for_a_standbys() -> None:
    sessions = [Session("old", free_slots=3), Session("new", free_slots=1)]
    assert plan(jobs("a", "b", "i"), sessions) == [("a", "new"), ("i", "new")]
    # A job waiting for the full latest worker does not hold back one for the standby.
    queued = [*jobs("a", "b"), asking("c", worker="old")]
    assert plan(queued, sessions) == [("a", "new"), ("c", "old")]


def test_spread_fills_the_slots_that_start_a_job_at_once_first() -> None:
    sessions = [Session("a", free_slots=2, prefetch=1), Session("b", free_slots=2, prefetch=1)]
    # Each worker has one slot that runs a job now and one that holds it ready.
    assert plan(jobs("j1", "j2", "j3"), sessions, SPREAD) == [
        ("j1", "b"),
        ("j2", "a"),
        ("j3", "b"),
    ]


def test_spread_sends_a_job_where_its_inputs_are_cached_then_to_the_least_loaded() -> None:
    big, small = "f" * 64, "e" * 64
    sessions = [
        Session("holds-big", free_slots=1, cached={big: 20_000_000}),
        Session("holds-small", free_slots=1, cached={small: 1_000}),
        Session("idle", free_slots=3),
    ]
    job = QueuedJob("j", inputs=(small, big))
    assert plan([job], sessions, SPREAD) == [("j", "holds-big")]
    assert plan(jobs("x"), sessions, SPREAD) == [("x", "idle")]


def test_spread_keeps_constraints_and_skips_full_or_draining_workers() -> None:
    sessions = [
        Session("full", free_slots=0, labels={"gpu": "a100"}),
        Session("draining", draining=True, labels={"gpu": "a100"}),
        Session("cpu", free_slots=4),
    ]
    assert plan([asking("g", gpu="a100"), asking("c")], sessions, SPREAD) == [("c", "cpu")]


def test_a_constraint_describes_itself_for_error_messages() -> None:
    assert Constraint().describe() == ""
    assert Constraint.of("gpu-box").describe() == "named 'gpu-box'"
    both = Constraint.of("b", {"zone": "eu", "gpu": "a100"})
    assert both.describe() == "named 'b' with labels gpu=a100, zone=eu"


def session_of(
    name: str, hostname: str = "h", environment: str = "/env", key: str = "k"
) -> WorkerSession:
    info = common_pb2.WorkerInfo(name=name, hostname=hostname, environment=environment)
    return WorkerSession(info=info, peer="p", key_name=key)


def test_a_name_is_one_workers_and_the_same_worker_replaces_its_session() -> None:
    async def scenario() -> None:
        registry = WorkerRegistry()
        first = session_of("w")
        assert registry.add(first) is None
        for other in (
            session_of("w", hostname="h2"),
            session_of("w", environment="/other"),
            session_of("w", key="another key"),
        ):
            with pytest.raises(NameTaken, match="the name 'w' is taken"):
                registry.add(other)
        again = session_of("w")
        assert registry.add(again) is first
        assert registry.in_connection_order == [again]
        assert registry.named("w") is again

    asyncio.run(scenario())


def test_only_the_job_no_worker_may_run_fails_after_the_grace() -> None:
    async def scenario() -> None:
        registry = WorkerRegistry()
        board = JobBoard(registry, ArtifactStore(), no_worker_grace_s=0.05)
        session = session_of("cpu")
        session.concurrency = 0  # no free slot: both jobs stay queued
        registry.add(session)
        unread = UnreadResults()
        spec = common_pb2.JobSpec(call={})
        anyone = Job("any", spec, JobEvents(unread))
        gpu_only = Job("gpu", spec, JobEvents(unread), constraint=Constraint.of("gpu"))
        board.submit(anyone)
        board.submit(gpu_only)
        await asyncio.wait_for(gpu_only.events.queue.get(), 5)  # its "queued"
        end = (await asyncio.wait_for(gpu_only.events.queue.get(), 5)).end
        assert gpu_only.state is JobState.ENDED and anyone.state is JobState.QUEUED
        assert end.failure.type == "NoWorker"
        assert "no worker named 'gpu' was connected" in end.failure.message

    asyncio.run(scenario())
