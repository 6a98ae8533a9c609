"""A client's jobs share one stream to the hub; an unchanged model is pickled once."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import grpc
import numpy as np
import pandas as pd
import pytest
import remote_models
from conftest import CONNECTED, WorkerProcess, wait_until

from giskard.client import HubClient
from giskard.client_stream import JobStream, StreamedJob
from giskard.errors import GiskardError, HubUnavailableError, JobCancelledError
from giskard.hub.server import Hub
from giskard.protocol import JOB_WINDOW_BYTES
from giskard.rpc.v1 import client_pb2, client_pb2_grpc, common_pb2

RESULT_TIMEOUT_S = 60.0


def test_many_jobs_go_over_one_stream_each_with_its_own_result(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple
) -> None:
    model, data = iris
    handles = [client.submit_predict(model, data.iloc[i : i + 1 + i % 7]) for i in range(120)]
    handles += [client.submit(sum, [i, i]) for i in range(30)]
    for i, handle in enumerate(handles[:120]):
        expected = model.predict(data.iloc[i : i + 1 + i % 7])
        np.testing.assert_array_equal(handle.result(timeout=RESULT_TIMEOUT_S), expected)
    assert [h.result(timeout=RESULT_TIMEOUT_S) for h in handles[120:]] == [2 * i for i in range(30)]
    assert hub.job_streams_opened == 1


def test_a_result_larger_than_the_window_comes_whole_while_other_jobs_go_on(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple
) -> None:
    """Its chunks (1 MiB each) come over many replies, the hub sending more as the client
    takes them; left unread, it does not hold up the stream's other jobs."""
    model, data = iris
    megabytes = 3 * JOB_WINDOW_BYTES // 2**20
    big = client.submit_predict(remote_models.BigResultModel(megabytes), data)
    # Unread, it waits at the hub beyond what the client holds of it.
    held = megabytes * 2**20 - JOB_WINDOW_BYTES - 2 * 2**20
    wait_until(lambda: hub.unread_results.held_bytes >= held, 30, "the hub to hold the rest")
    for _ in range(5):
        expected = model.predict(data.head(3))
        np.testing.assert_array_equal(client.predict(model, data.head(3)), expected)
    result = big.result(timeout=RESULT_TIMEOUT_S)
    assert result.nbytes == megabytes * 1024 * 1024
    np.testing.assert_array_equal(result, np.arange(result.size, dtype=np.float64))
    assert hub.job_streams_opened == 1


def test_cancel_over_the_stream_ends_that_job_only(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple, tmp_path: Path
) -> None:
    model, data = iris
    marker = tmp_path / "started"
    slow = client.submit_predict(remote_models.SlowModel(marker, 120), data)
    wait_until(marker.exists, 30, "the slow job to start")
    assert slow.cancel()
    with pytest.raises(JobCancelledError):
        slow.result(timeout=RESULT_TIMEOUT_S)
    assert slow.cancelled()
    np.testing.assert_array_equal(client.predict(model, data), model.predict(data))
    assert hub.job_streams_opened == 1


def test_a_job_whose_handle_is_dropped_is_cancelled(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple, tmp_path: Path
) -> None:
    """As a RunJob call dropped unread was: its worker slot does not stay taken."""
    model, data = iris
    marker = tmp_path / "started"
    handle = client.submit_predict(remote_models.SlowModel(marker, 120), data)
    wait_until(marker.exists, 30, "the slow job to start")
    del handle
    gc.collect()

    def nothing_running() -> bool:
        return not any(worker["running"] for worker in client.status()["workers"])

    wait_until(nothing_running, 30, "the dropped job to be cancelled")
    np.testing.assert_array_equal(client.predict(model, data), model.predict(data))


def test_a_refused_job_fails_alone_with_the_hubs_reason(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple
) -> None:
    model, data = iris
    stored = client.put(model)
    missing = common_pb2.ArtifactRef(blake3="0" * 64, size=100_000)
    forged = type(stored)(missing, pickled=True)
    with pytest.raises(GiskardError, match="does not hold the job's input"):
        client.predict(forged, data)
    np.testing.assert_array_equal(client.predict(stored, data), model.predict(data))
    assert hub.job_streams_opened == 1


def test_a_stream_the_hub_drops_fails_its_jobs_and_the_next_job_opens_another(
    start_worker: Callable[..., WorkerProcess], iris: tuple, tmp_path: Path
) -> None:
    model, data = iris
    marker = tmp_path / "started"
    with Hub(port=0) as hub:
        port = hub.port
        worker = start_worker("-h", "127.0.0.1", "-p", str(port))
        worker.wait_for_output(CONNECTED)
        client = HubClient(hub.address)
        slow = client.submit_predict(remote_models.SlowModel(marker, 120), data)
        wait_until(marker.exists, 30, "the slow job to start")
    with pytest.raises(GiskardError) as failure:
        slow.result(timeout=RESULT_TIMEOUT_S)
    assert isinstance(failure.value, HubUnavailableError), failure.value
    with Hub(port=port) as again:
        worker.wait_for_output(CONNECTED, count=2, timeout_s=30)
        np.testing.assert_array_equal(
            client.predict(model, data, timeout_s=RESULT_TIMEOUT_S), model.predict(data)
        )
        assert again.job_streams_opened == 1
    client.close()


def test_a_job_run_by_an_older_client_one_call_per_job(
    hub: Hub, connected_worker: WorkerProcess
) -> None:
    metadata = (("authorization", f"Bearer {hub.admin_key}"),)
    with grpc.insecure_channel(hub.address) as channel:
        stub = client_pb2_grpc.PlatformStub(channel)
        request = client_pb2.RunJobRequest(
            spec=common_pb2.JobSpec(info=common_pb2.InfoJob()), job_id="older-client-job"
        )
        events = list(stub.RunJob(request, metadata=metadata, timeout=RESULT_TIMEOUT_S))
    assert events[-1].WhichOneof("kind") == "end"
    assert events[-1].end.WhichOneof("outcome") == "success"
    assert hub.job_streams_opened == 0


def _counting_pickles(monkeypatch: pytest.MonkeyPatch, counted: object) -> list[object]:
    """The calls to cloudpickle.dumps for `counted`."""
    calls: list[object] = []
    dumps = cloudpickle.dumps

    def counting(obj: Any, *args: Any, **kwargs: Any) -> bytes:
        if obj is counted:
            calls.append(obj)
        return dumps(obj, *args, **kwargs)

    monkeypatch.setattr(cloudpickle, "dumps", counting)
    return calls


def test_the_same_model_is_pickled_once_until_it_changes(
    client: HubClient, connected_worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    frame = load_iris(as_frame=True)
    model = LogisticRegression(max_iter=1000).fit(frame.data, frame.target)
    pickles = _counting_pickles(monkeypatch, model)
    first = client.predict(model, frame.data)
    np.testing.assert_array_equal(client.predict(model, frame.data), first)
    assert len(pickles) == 1

    # Refit on other labels: other arrays in its attributes.
    model.fit(frame.data, (frame.target + 1) % 3)
    refit = client.predict(model, frame.data)
    assert len(pickles) == 2
    np.testing.assert_array_equal(refit, model.predict(frame.data))
    assert not np.array_equal(refit, first)

    # Changed in place: the same array objects, other values.
    model.coef_ *= -1
    model.intercept_ *= -1
    flipped = client.predict(model, frame.data)
    assert len(pickles) == 3
    np.testing.assert_array_equal(flipped, model.predict(frame.data))
    assert not np.array_equal(flipped, refit)


def test_a_model_whose_class_is_pickled_by_value_is_pickled_every_time(
    client: HubClient, connected_worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its methods' globals would go into its pickle: its state says nothing of them."""
    model = remote_models.FrameModel()
    pickles = _counting_pickles(monkeypatch, model)
    data = pd.DataFrame({"x": [1.0, 2.0]})
    for _ in range(2):
        pd.testing.assert_frame_equal(client.predict(model, data), model.predict(data))
    assert len(pickles) == 2


def test_a_hub_without_the_jobs_stream_runs_the_jobs_one_call_each(
    start_worker: Callable[..., WorkerProcess], iris: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older hub answers UNIMPLEMENTED, as its servicer's default does."""
    from giskard.hub.platform_service import PlatformService

    monkeypatch.setattr(PlatformService, "Jobs", client_pb2_grpc.PlatformServicer.Jobs)
    model, data = iris
    with Hub(port=0) as hub, HubClient(hub.address) as client:
        start_worker("-h", "127.0.0.1", "-p", str(hub.port)).wait_for_output(CONNECTED)
        handles = [client.submit_predict(model, data.head(n)) for n in range(1, 4)]
        for n, handle in enumerate(handles, 1):
            expected = model.predict(data.head(n))
            np.testing.assert_array_equal(handle.result(timeout=RESULT_TIMEOUT_S), expected)
        np.testing.assert_array_equal(client.predict(model, data), model.predict(data))
        assert hub.job_streams_opened == 0


def test_the_stream_answers_bad_messages_on_purpose(hub: Hub) -> None:
    """A submission without its id is refused alone; bytes that do not decode end the stream
    with INVALID_ARGUMENT, never UNKNOWN."""
    metadata = (("authorization", f"Bearer {hub.admin_key}"),)
    spec = common_pb2.JobSpec(info=common_pb2.InfoJob())
    anonymous = client_pb2.JobsRequest(submit=[client_pb2.RunJobRequest(spec=spec)])
    with grpc.insecure_channel(hub.address) as channel:
        stub = client_pb2_grpc.PlatformStub(channel)
        replies = stub.Jobs(iter([anonymous]), metadata=metadata, timeout=RESULT_TIMEOUT_S)
        refused = next(replies).events[0].refused
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "needs its id" in refused.message
        replies.cancel()
        raw = channel.stream_stream("/giskard.rpc.v1.Platform/Jobs")
        with pytest.raises(grpc.RpcError) as failure:
            list(raw(iter([b"\xff\xff\xff"]), metadata=metadata, timeout=RESULT_TIMEOUT_S))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


class ScriptedCall:
    """A Jobs call whose replies are given: waits for the first submission, then answers."""

    def __init__(self, requests: Iterator[client_pb2.JobsRequest], replies: list[Any]) -> None:
        self._requests, self._replies = requests, replies
        self.cancelled = threading.Event()

    def __iter__(self) -> Iterator[client_pb2.JobsReply]:
        next(self._requests)  # the first submission is out: its job is known
        for reply in self._replies:
            if isinstance(reply, Exception):
                raise reply
            yield reply
        self.cancelled.wait(30)

    def cancel(self) -> None:
        self.cancelled.set()


def scripted_stream(replies: list[Any]) -> tuple[JobStream, StreamedJob]:
    def run_job(request: client_pb2.RunJobRequest, deadline_s: float | None) -> Any:
        raise AssertionError("no RunJob fallback expected")

    stream = JobStream(lambda requests: ScriptedCall(requests, replies), run_job)
    request = client_pb2.RunJobRequest(job_id="job-00000001")
    return stream, stream.submit(request, deadline_s=30)


def test_an_event_of_a_kind_this_client_does_not_know_is_skipped() -> None:
    end = client_pb2.JobEvent(end=common_pb2.JobEnd(job_id="job-00000001"))
    unknown = client_pb2.JobEvent()  # what a newer hub's new kind of event reads as here
    _, job = scripted_stream([client_pb2.JobsReply(events=[unknown, end])])
    assert next(iter(job)).WhichOneof("kind") == "end"  # not a reader that died on it


def test_a_reader_that_fails_fails_its_jobs_instead_of_leaving_them_waiting() -> None:
    stream, job = scripted_stream([RuntimeError("a bug")])
    with pytest.raises(grpc.RpcError) as failed:
        list(job)
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    assert "a bug" in failed.value.details() and stream.broken


def test_a_state_differs_in_values_that_compare_equal_but_pickle_differently() -> None:
    from sklearn.linear_model import LogisticRegression

    from giskard.pickle_cache import state_of

    model = LogisticRegression(C=0.0)
    before = state_of(model)
    model.C = -0.0  # == 0.0, yet another model: its pickle must be made again
    assert state_of(model) != before
    record = np.zeros(3, dtype=[("a", "<f8")])
    model.coef_ = record
    before = state_of(model)
    model.coef_ = record.view([("b", "<f8")])  # the same bytes and dtype.str ("|V8")
    assert state_of(model) != before


def test_the_hub_holds_a_bounded_amount_of_results_in_a_streams_outbox() -> None:
    import asyncio

    from giskard.hub.job_stream import OUTBOX_MAX_BYTES, _OutboxBytes

    async def scenario() -> None:
        held = _OutboxBytes()
        await held.reserve(OUTBOX_MAX_BYTES - 10)
        more = asyncio.create_task(held.reserve(11))  # would pass the bound: it waits
        await asyncio.sleep(0)
        assert not more.done()
        held.release(OUTBOX_MAX_BYTES - 10)  # the reply went out
        await asyncio.wait_for(more, timeout=5)
        held.release(11)
        # Into an empty outbox, one chunk always goes, however big.
        await asyncio.wait_for(held.reserve(10 * OUTBOX_MAX_BYTES), timeout=5)

    asyncio.run(scenario())


def test_a_job_the_hub_fails_to_take_fails_alone_and_the_stream_goes_on(
    hub: Hub,
    client: HubClient,
    connected_worker: WorkerProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from giskard.hub import platform_service

    admit = platform_service.PlatformService._admit

    def failing_admit(self: Any, key: Any, request: client_pb2.RunJobRequest) -> Any:
        if request.spec.timeout_s == 13:
            raise RuntimeError("a bug in the hub")
        return admit(self, key, request)

    monkeypatch.setattr(platform_service.PlatformService, "_admit", failing_admit)
    with pytest.raises(GiskardError, match="could not take the job: a bug in the hub"):
        client.call(len, "abc", timeout_s=13)
    assert client.call(len, "abcd", timeout_s=30) == 4
    assert hub.job_streams_opened == 1
