"""What a pickle needs and how an environment differs from it (giskard.compat), and routing
by it: pure functions, no gRPC."""

from __future__ import annotations

import pickle
import platform
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from test_job_lifecycle import Parts, next_event, run

from giskard import compat
from giskard.compat import Difference, Requirements
from giskard.hub.job import Job as BoardJob
from giskard.hub.job_events import JobEvents
from giskard.hub.registry import WorkerSession
from giskard.hub.routing import Constraint, incompatibilities, may_run, route
from giskard.rpc.v1 import common_pb2

NEEDS_SKLEARN = Requirements("3.12", "3.1.1", (("scikit-learn", "1.5.2"),))


def worker(name: str, python: str, **packages: str) -> common_pb2.WorkerInfo:
    return common_pb2.WorkerInfo(name=name, python_version=python, packages=packages)


def test_a_pickle_references_the_modules_of_its_globals_by_either_opcode() -> None:
    model = LogisticRegression()
    for protocol in (2, pickle.HIGHEST_PROTOCOL):  # GLOBAL, then STACK_GLOBAL and the memo
        modules = compat.referenced_modules(pickle.dumps([model, LogisticRegression()], protocol))
        assert "sklearn.linear_model._logistic" in modules


def test_modules_cloudpickle_imports_by_name_are_referenced_too() -> None:
    def uses_numpy() -> Any:
        return np.zeros(1)

    pickled = cloudpickle.dumps(uses_numpy)
    assert "numpy" in compat.referenced_modules(pickled)
    # cloudpickle, referenced too, is recorded in its own field.
    assert dict(compat.requirements_of(pickled).distributions) == {"numpy": np.__version__}


def test_requirements_name_distributions_not_modules_and_skip_the_standard_library() -> None:
    import collections

    pickled = cloudpickle.dumps([LogisticRegression(), collections.OrderedDict()])
    needs = compat.requirements_of(pickled)
    assert needs.python == ".".join(platform.python_version().split(".")[:2])
    assert needs.cloudpickle == cloudpickle.__version__
    assert dict(needs.distributions) == {"scikit-learn": sklearn.__version__}


def test_requirements_travel_as_proto_and_as_plain_values() -> None:
    assert Requirements.from_proto(NEEDS_SKLEARN.to_proto()) == NEEDS_SKLEARN
    assert Requirements.from_plain(NEEDS_SKLEARN.to_plain()) == NEEDS_SKLEARN


def test_another_python_minor_or_a_missing_distribution_blocks_a_version_does_not() -> None:
    same = worker("twin", "3.12.4", **{"Scikit_Learn": "1.5.2", "cloudpickle": "3.1.1"})
    assert compat.differences(NEEDS_SKLEARN, same) == []

    older = worker("gpu-box", "3.10.12", **{"scikit-learn": "1.3.0", "cloudpickle": "3.0.0"})
    assert compat.differences(NEEDS_SKLEARN, older) == [
        Difference("gpu-box", "python", "3.12", "3.10", blocking=True),
        Difference("gpu-box", "cloudpickle", "3.1.1", "3.0.0", blocking=False),
        Difference("gpu-box", "scikit-learn", "1.5.2", "1.3.0", blocking=False),
    ]
    assert compat.blocking(compat.differences(NEEDS_SKLEARN, older))

    bare = worker("bare", "3.12.0", cloudpickle="3.1.1")
    assert compat.differences(NEEDS_SKLEARN, bare) == [
        Difference("bare", "scikit-learn", "1.5.2", "", blocking=True)
    ]
    newer = worker("new", "3.12.1", cloudpickle="3.1.1", **{"scikit-learn": "1.6.0"})
    assert not compat.blocking(compat.differences(NEEDS_SKLEARN, newer))


def test_no_requirements_load_anywhere() -> None:
    assert compat.differences(compat.NOTHING, worker("any", "2.7.18")) == []


def test_a_worker_that_reports_no_environment_is_not_judged() -> None:
    assert not compat.blocking(compat.differences(NEEDS_SKLEARN, worker("silent", "")))


def test_the_explanation_names_what_differs_per_worker() -> None:
    older = worker("gpu-box", "3.10.12", **{"scikit-learn": "1.3.0", "cloudpickle": "3.1.1"})
    bare = worker("bare", "3.12.0", cloudpickle="3.1.1")
    diffs = compat.differences(NEEDS_SKLEARN, older) + compat.differences(NEEDS_SKLEARN, bare)
    assert compat.explain(NEEDS_SKLEARN, diffs) == (
        "pickled on Python 3.12 with scikit-learn 1.5.2; worker gpu-box has Python 3.10 and"
        " scikit-learn 1.3.0; worker bare lacks scikit-learn"
    )


@dataclass
class Session:
    name: str
    info: common_pb2.WorkerInfo
    labels: dict[str, str] = field(default_factory=dict)
    free_slots: int = 1
    prefetch: int = 0
    draining: bool = False

    @property
    def takes_jobs(self) -> bool:
        return not self.draining

    @property
    def will_take_jobs(self) -> bool:
        return not self.draining

    def cached_bytes(self, inputs: Any) -> int:
        return 0

    def differences(self, requirements: Requirements) -> list[Difference]:
        return compat.differences(requirements, self.info)


@dataclass(frozen=True)
class Job:
    constraint: Constraint
    takes_a_slot: bool = True
    inputs: tuple[str, ...] = ()


def test_routing_sends_a_job_only_to_a_worker_that_can_load_it() -> None:
    able = Session(
        "able", worker("able", "3.12.1", cloudpickle="3.1.1", **{"scikit-learn": "1.5.2"})
    )
    bare = Session("bare", worker("bare", "3.12.1", cloudpickle="3.1.1"))
    needs = Job(Constraint.of(requirements=NEEDS_SKLEARN))
    anything = Job(Constraint.of())
    assert [(j, s.name) for j, s in route([needs, anything], [able, bare])] == [
        (needs, "able"),
        (anything, "bare"),
    ]
    assert incompatibilities(needs.constraint, [able, bare]) == []
    assert not may_run(needs.constraint, [bare])
    assert incompatibilities(needs.constraint, [bare]) == [
        Difference("bare", "scikit-learn", "1.5.2", "", blocking=True)
    ]
    # Workers the caller did not ask for are not blamed.
    named = Constraint.of("other", requirements=NEEDS_SKLEARN)
    assert incompatibilities(named, [bare]) == []


def test_a_queued_job_that_only_incompatible_workers_could_take_ends_saying_why() -> None:
    """Its compatible worker left while it waited: past the grace, it ends as incompatible,
    not as if no worker were connected."""

    async def scenario() -> None:
        hub = Parts(no_worker_grace_s=0.05)
        bare = worker("bare", "3.12.1", cloudpickle="3.1.1")
        hub.registry.add(WorkerSession(info=bare, peer="p"))
        constraint = Constraint.of(requirements=NEEDS_SKLEARN)
        job = BoardJob(
            "j", common_pb2.JobSpec(call={}), JobEvents(hub.unread), constraint=constraint
        )
        hub.board.submit(job)
        assert (await next_event(job)).WhichOneof("kind") == "queued"
        end = (await next_event(job)).end
        assert end.reason == common_pb2.END_REASON_INCOMPATIBLE_ENVIRONMENT
        assert "worker bare lacks scikit-learn" in end.failure.message
        assert [Difference.from_proto(d) for d in end.failure.differences] == [
            Difference("bare", "scikit-learn", "1.5.2", "", blocking=True)
        ]

    run(scenario)


def test_a_job_sent_where_a_version_differs_reports_it_with_its_end() -> None:
    async def scenario() -> None:
        hub = Parts()
        older = worker("older", "3.12.4", cloudpickle="3.1.1", **{"scikit-learn": "1.3.0"})
        hub.registry.add(WorkerSession(info=older, peer="p"))
        constraint = Constraint.of(requirements=NEEDS_SKLEARN)
        job = BoardJob(
            "j", common_pb2.JobSpec(call={}), JobEvents(hub.unread), constraint=constraint
        )
        hub.board.submit(job)  # sent at once: a version difference does not block
        ref = common_pb2.ArtifactRef(inline=b"r", size=1)
        hub.board.worker_ended(job, common_pb2.JobEnd(job_id="j", success={"result": ref}))
        end = (await next_event(job)).end
        assert end.WhichOneof("outcome") == "success"
        assert [Difference.from_proto(d) for d in end.differences] == [
            Difference("older", "scikit-learn", "1.5.2", "1.3.0", blocking=False)
        ]

    run(scenario)


def test_each_worker_is_judged_once_per_requirements_not_at_every_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hub compares a worker's environment with a job's requirements once per pair: jobs
    that need the same thing cost a dictionary look-up each, however many go through."""
    judged: list[tuple[Requirements, str]] = []

    def counting(requirements: Requirements, info: Any) -> list[Difference]:
        judged.append((requirements, info.name))
        return real(requirements, info)

    real = compat.differences
    monkeypatch.setattr(compat, "differences", counting)

    async def scenario() -> None:
        hub = Parts()
        older = worker("older", "3.12.4", cloudpickle="3.1.1", **{"scikit-learn": "1.3.0"})
        hub.registry.add(WorkerSession(info=older, peer="p"))
        for n in range(20):
            # Each job states its requirements anew, as each RunJob call does.
            needs = Requirements("3.12", "3.1.1", (("scikit-learn", "1.5.2"),))
            constraint = Constraint.of(requirements=needs)
            job = BoardJob(
                f"j{n}", common_pb2.JobSpec(call={}), JobEvents(hub.unread), constraint=constraint
            )
            hub.board.receive(job, 0, lambda: "no worker")
            ref = common_pb2.ArtifactRef(inline=b"r", size=1)
            hub.board.worker_ended(
                job, common_pb2.JobEnd(job_id=job.job_id, success={"result": ref})
            )
            end = (await next_event(job)).end
            assert [Difference.from_proto(d) for d in end.differences] == [
                Difference("older", "scikit-learn", "1.5.2", "1.3.0", blocking=False)
            ]

    run(scenario)
    assert judged == [(NEEDS_SKLEARN, "older")]
