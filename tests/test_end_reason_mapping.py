"""The hub's recent jobs, and which exception each reason raises in the client (real jobs
reach the reasons in test_end_reasons and test_execution; test_job_lifecycle checks the
reason of each end the hub decides)."""

from __future__ import annotations

import pytest
from test_job_lifecycle import Parts, end_of, run, sent

from giskard import end_reasons
from giskard.errors import (
    DrainedError,
    EndReason,
    ExecutorCrashedError,
    IncompatibleEnvironmentError,
    JobCancelledError,
    JobError,
    JobTimeoutError,
    MemoryLimitError,
    NoWorkerError,
    WorkerLostError,
)
from giskard.hub.jobs import RECENT_JOBS, JobBoard
from giskard.job_handle import JobHandle
from giskard.rpc.v1 import client_pb2, common_pb2


def last_recent(board: JobBoard) -> tuple[EndReason | None, str, str]:
    ended = board.recent[-1]
    return end_reasons.from_proto(ended.reason), ended.detail, ended.worker_id


def test_jobs_whose_worker_leaves_end_as_worker_lost_and_those_left_as_cancelled() -> None:
    async def scenario() -> None:
        hub = Parts()
        session = await hub.connect(concurrency=2)
        left, lost = hub.submit("left"), hub.submit("lost")
        assert sent(session) == ["job left", "job lost"]
        hub.board.withdraw(left)
        assert last_recent(hub.board) == (EndReason.CANCELLED, "ClientLeft", "w")
        hub.board.session_lost(session, "the worker left")
        assert end_of(lost).reason == common_pb2.END_REASON_WORKER_LOST
        assert [r.job_id for r in hub.board.recent] == ["left", "lost"]  # each job once

    run(scenario)


class Events(list):
    """A finished RunJob call: its events, nothing left to cancel."""

    def done(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        (EndReason.MODEL_ERROR, JobError),
        (EndReason.TIMEOUT, JobTimeoutError),
        (EndReason.CANCELLED, JobCancelledError),
        (EndReason.WORKER_LOST, WorkerLostError),
        (EndReason.EXECUTOR_CRASHED, ExecutorCrashedError),
        (EndReason.MEMORY_LIMIT, MemoryLimitError),
        (EndReason.DRAINED, DrainedError),
        (EndReason.INCOMPATIBLE_ENVIRONMENT, IncompatibleEnvironmentError),
    ],
)
def test_each_reason_raises_its_own_error_with_the_jobs_logs(
    reason: EndReason, error: type[JobError]
) -> None:
    failure = common_pb2.JobFailure(type="Detail", message="it ended", signal=9)
    end = common_pb2.JobEnd(
        job_id="j", failure=failure, reason=end_reasons.to_proto(reason), logs=b"last line\n"
    )
    handle = JobHandle(Events([client_pb2.JobEvent(end=end)]), errors=lambda exc: exc)
    with pytest.raises(error, match="Detail: it ended") as raised:
        handle.result(timeout=60)
    assert type(raised.value) is error
    assert (raised.value.reason, raised.value.remote_type) == (reason, "Detail")
    assert raised.value.logs == handle.logs() == "last line\n"
    if reason is EndReason.EXECUTOR_CRASHED:
        assert raised.value.signal == 9


def test_a_job_no_worker_came_for_raises_no_worker_error() -> None:
    failure = common_pb2.JobFailure(type="NoWorker", message="no worker connected for 30 s")
    end = common_pb2.JobEnd(job_id="j", failure=failure, reason=common_pb2.END_REASON_NO_WORKER)
    handle = JobHandle(Events([client_pb2.JobEvent(end=end)]), errors=lambda exc: exc)
    with pytest.raises(NoWorkerError, match="no worker connected for 30 s"):
        handle.result(timeout=60)


def test_every_end_reason_has_its_wire_form() -> None:
    on_the_wire = {
        name.removeprefix("END_REASON_") for name in common_pb2.EndReason.DESCRIPTOR.values_by_name
    }
    assert on_the_wire - {"UNSPECIFIED"} == {reason.name for reason in EndReason}
    assert {end_reasons.from_proto(end_reasons.to_proto(r)) for r in EndReason} == set(EndReason)
    assert end_reasons.from_proto(common_pb2.END_REASON_UNSPECIFIED) is None
    assert end_reasons.from_proto(999) is None


def test_the_hub_keeps_the_last_jobs_that_ended_only() -> None:
    async def scenario() -> None:
        hub = Parts()
        for i in range(RECENT_JOBS + 5):
            hub.board.withdraw(hub.submit(f"j{i}"))
        assert [ended.job_id for ended in hub.board.recent] == [
            f"j{i}" for i in range(5, RECENT_JOBS + 5)
        ]

    run(scenario)
