"""Routing, alone: which queued job goes to which worker, as a pure function of the queue and
the sessions."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from giskard.hub.job_events import JobEvents, UnreadResults
from giskard.hub.jobs import Job
from giskard.hub.registry import WorkerSession
from giskard.hub.routing import active_session, route
from giskard.rpc.v1 import common_pb2


@dataclass
class QueuedJob:
    name: str
    takes_a_slot: bool = True


@dataclass
class Session:
    name: str
    free_slots: int = 1
    draining: bool = False

    @property
    def takes_jobs(self) -> bool:
        return not self.draining


def jobs(*names: str) -> list[QueuedJob]:
    """Jobs named 'i…' are info jobs; the others take a slot."""
    return [QueuedJob(name, takes_a_slot=not name.startswith("i")) for name in names]


def plan(queued: list[QueuedJob], sessions: list[Session]) -> list[tuple[str, str]]:
    return [(job.name, session.name) for job, session in route(queued, sessions)]


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
    queued = jobs("i1", "a", "b", "i2", "c")
    assert plan(queued, [Session("w", free_slots=1)]) == [("i1", "w"), ("a", "w"), ("i2", "w")]
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
