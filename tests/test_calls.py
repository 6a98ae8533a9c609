"""Generic calls, progress, concurrency and the executors' caches."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import remote_models
from conftest import CONNECTED, WorkerProcess, giskard_command, wait_until

from giskard import compat
from giskard.client import HubClient
from giskard.errors import GiskardError, JobError
from giskard.hub import Hub
from giskard.progress import report_progress
from giskard.protocol import digest_of


def worker_with(hub: Hub, start_worker: Callable[..., WorkerProcess], *args: str) -> WorkerProcess:
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), *args)
    worker.wait_for_output(CONNECTED)
    return worker


RESULTS = [
    None,
    True,
    -7,
    2.5,
    float("nan"),
    "text",
    [1, "a", None, [2.0]],
    {"scores": [0.1, 0.9], "name": "x", "nested": {"ok": True}},
    np.arange(12, dtype=np.float32).reshape(3, 4),
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
    pd.Series([1.5, 2.5], name="s", index=["i", "j"]),
]


@pytest.mark.parametrize("value", RESULTS, ids=lambda v: type(v).__name__)
def test_call_returns_each_kind_of_data(
    client: HubClient, connected_worker: WorkerProcess, value: object
) -> None:
    result = client.call(lambda: value)
    if isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(result, value)
    elif isinstance(value, pd.Series):
        pd.testing.assert_series_equal(result, value)
    elif isinstance(value, np.ndarray):
        np.testing.assert_array_equal(result, value)
        assert result.dtype == value.dtype
    elif isinstance(value, float) and value != value:
        assert result != result
    else:
        assert result == value and type(result) is type(value)


def test_a_result_that_is_not_data_is_refused_with_a_clear_error(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    with pytest.raises(JobError, match="returned a set, which cannot be sent back as data"):
        client.call(lambda: {1, 2})
    assert client.call(lambda: 1) == 1  # the worker is fine


def test_call_takes_models_frames_and_keyword_arguments(
    client: HubClient, connected_worker: WorkerProcess, breast_cancer: tuple
) -> None:
    model, data = breast_cancer

    def score(model: object, frame: pd.DataFrame, *, column: str) -> dict:
        return {
            "rows": len(frame),
            "column_mean": float(frame[column].mean()),
            "first": model.predict(frame.head(5)).tolist(),
        }

    result = client.call(score, model, data, column="mean radius")
    assert result == {
        "rows": len(data),
        "column_mean": float(data["mean radius"].mean()),
        "first": model.predict(data.head(5)).tolist(),
    }


def test_a_function_cannot_change_a_cached_input(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    frame = pd.DataFrame({"a": np.arange(100_000.0)})  # over the inline size: cached

    def mutate(frame: pd.DataFrame) -> float:
        total = float(frame["a"].sum())
        frame["a"] = 0.0
        frame.loc[0, "a"] = -1.0
        return total

    assert client.call(mutate, frame) == client.call(mutate, frame) == frame["a"].sum()
    assert "2 of 2 input(s) cached, 0 B sent" in connected_worker.output


def test_progress_reaches_the_client_for_predict_and_call(
    client: HubClient, connected_worker: WorkerProcess, breast_cancer: tuple
) -> None:
    model, data = breast_cancer
    rows = data.sample(200_000, replace=True, random_state=0).reset_index(drop=True)
    seen: list[tuple[int, int]] = []
    paced = remote_models.PacedModel(model)  # batches slow enough to be reported one by one
    result = client.predict(paced, rows, on_progress=lambda done, total: seen.append((done, total)))
    np.testing.assert_array_equal(result, model.predict(rows))
    assert seen[0] == (0, 200_000) and seen[-1] == (200_000, 200_000)
    assert len(seen) >= 10 and [d for d, _ in seen] == sorted(d for d, _ in seen)

    def steps(count: int) -> int:
        for step in range(1, count + 1):
            time.sleep(0.12)  # progress is rate-limited to ~10 reports a second
            report_progress(step, count)
        return count

    reported: list[tuple[int, int]] = []
    assert client.call(steps, 5, on_progress=lambda d, t: reported.append((d, t))) == 5
    assert reported == [(step, 5) for step in range(1, 6)]


def test_concurrent_jobs_overlap_and_the_hub_queues_the_rest(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = worker_with(hub, start_worker, "--concurrency", "2")

    def busy(seconds: float) -> list[float]:
        import os

        began = time.time()
        time.sleep(seconds)
        return [began, time.time(), float(os.getpid())]

    # Both executors up first, a slow start is not a lack of overlap: two jobs at once take
    # one slot each, and end once both executors have started.
    for warm_up in [client.submit(time.sleep, 0.1) for _ in range(2)]:
        warm_up.result(timeout=60)
    handles = [client.submit(busy, 2.0) for _ in range(6)]

    def states() -> tuple[list[bool], int]:
        status = client.status()
        return [job["waiting"] for job in status["workers"][0]["running"]], status["queued"]

    # Two run, two more wait in the worker ready to start (its prefetch), two wait at the hub.
    wait_until(lambda: states() == ([False, False, True, True], 2), 30, "2 running, 2 + 2 waiting")
    (worker_status,) = client.workers()
    assert (worker_status["concurrency"], worker_status["prefetch"]) == (2, 2)
    spans = [handle.result(timeout=60) for handle in handles]
    # The first two ran at the same time, in two processes.
    (a_start, a_end, a_pid), (b_start, b_end, b_pid) = spans[:2]
    assert max(a_start, b_start) < min(a_end, b_end) and a_pid != b_pid
    # Never more than two at once.
    for moment in [start for start, _, _ in spans]:
        assert sum(start <= moment < end for start, end, _ in spans) <= 2
    assert worker.process.poll() is None


def test_a_burst_of_thousands_of_jobs_all_complete(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    # More than gRPC's default of 1000 calls waiting to be served, which it would cancel.
    handles = [client.submit(pow, 2, n % 60) for n in range(2500)]
    assert [handle.result() for handle in handles] == [2 ** (n % 60) for n in range(2500)]


def test_worker_status_shows_the_running_jobs(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    worker = worker_with(hub, start_worker, "--concurrency", "2")
    marker = tmp_path / "started"

    def wait_forever(marker: Path) -> None:
        marker.touch()
        while True:
            time.sleep(1)

    def local_status() -> dict:
        env = {**os.environ, "GISKARD_HOME": str(worker.home)}
        command = giskard_command("worker", "status", "--json")
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        (status,) = json.loads(result.stdout)
        return status

    handle = client.submit(wait_forever, marker)
    wait_until(marker.exists, 30, "the job to start")
    status = wait_until(lambda: (s := local_status())["running_jobs"] == 1 and s, 10, "1 job")
    assert status["concurrency"] == 2
    handle.cancel()
    wait_until(lambda: local_status()["running_jobs"] == 0, 10, "no job running")


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = worker_with(hub, start_worker, "--cache-size", "3M")
    frames = {name: pd.DataFrame({"x": np.full(250_000, float(i))}) for i, name in enumerate("ABC")}

    def total(frame: pd.DataFrame) -> float:
        return float(frame["x"].sum())

    def sent(frame_name: str) -> str:
        """The worker's line about the inputs of a call on that frame."""
        before = worker.output.count("input(s) cached")
        client.call(total, frames[frame_name])
        worker.wait_for_output("input(s) cached", count=before + 1)
        return [line for line in worker.output.splitlines() if "input(s) cached" in line][-1]

    # Each frame is 2 MB: the cache holds one of them (and the small function).
    assert "0 of 2 input(s) cached" in sent("A")
    assert "2 of 2 input(s) cached, 0 B sent" in sent("A")
    assert "1 of 2 input(s) cached" in sent("B")  # evicts A
    assert "1 of 2 input(s) cached" in sent("A")


def test_a_value_put_once_is_used_by_predict_and_call_without_another_upload(
    client: HubClient, connected_worker: WorkerProcess, breast_cancer: tuple
) -> None:
    model, data = breast_cancer
    stored_model, stored_data = client.put(model), client.put(data)
    assert (stored_model.pickled, stored_data.pickled) == (True, False)
    assert stored_data.size > 64 * 1024  # uploaded, not inline
    np.testing.assert_array_equal(client.predict(stored_model, stored_data), model.predict(data))
    assert client.call(len, stored_data) == len(data)
    with pytest.raises(ValueError, match="must be code"):
        client.predict(stored_data, stored_data)


def test_an_inline_input_under_another_inputs_address_is_refused_by_the_hub(
    client: HubClient, connected_worker: WorkerProcess
) -> None:

    import cloudpickle

    from giskard.rpc.v1 import common_pb2

    def answer() -> str:
        return "the real one"

    def impostor() -> str:
        return "an impostor"

    real = cloudpickle.dumps(answer)
    address = digest_of([real])[0]
    fake = cloudpickle.dumps(impostor)
    # The impostor's bytes under the real function's address: were they cached by address on
    # the worker, every later job naming that address would run them.
    for size in (len(fake), len(real)):
        forged = common_pb2.ArtifactRef(blake3=address, size=size, inline=fake)
        spec = common_pb2.JobSpec(call=common_pb2.CallJob(function=forged))
        with pytest.raises(GiskardError, match="does not match its BLAKE3 or size"):
            client._submit(spec, 0.0, 30.0, None).result(timeout=60)
    assert client.call(answer) == "the real one"


def test_an_input_without_a_blake3_address_is_refused_with_one_clear_line(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    """A client of protocol v1 addressed inputs by BLAKE3 (a field the hub no longer reads)."""
    import cloudpickle
    import grpc

    from giskard.rpc.v1 import client_pb2, common_pb2

    pickled = cloudpickle.dumps(len)
    unaddressed = common_pb2.ArtifactRef(size=len(pickled), inline=pickled)
    spec = common_pb2.JobSpec(call=common_pb2.CallJob(function=unaddressed))
    with pytest.raises(GiskardError, match="without a BLAKE3 address: the client is older"):
        client._submit(spec, 0.0, 30.0, None).result(timeout=60)
    upload = iter(
        [client_pb2.Upload(ref=common_pb2.ArtifactRef(size=3)), client_pb2.Upload(data=b"abc")]
    )
    with pytest.raises(grpc.RpcError) as refused:
        client._stub.UploadArtifact(upload, metadata=client._metadata, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "without a BLAKE3 address" in refused.value.details()


@pytest.mark.parametrize(
    "distributions",
    [
        {f"dist{n}": "1.0" for n in range(compat.DISTRIBUTIONS_MAX + 1)},
        {"numpy": "\U0001f600" * 100},
        {"numpy": "1" * (compat.VERSION_MAX_CHARS + 1)},
        {"not a name": "1.0"},
    ],
    ids=["too-many", "not-ascii", "too-long", "not-a-name"],
)
def test_requirements_past_their_bounds_are_refused_at_submission(
    client: HubClient, connected_worker: WorkerProcess, distributions: dict[str, str]
) -> None:
    """What a job requires reaches a worker's executors in one pipe header: the hub takes
    only what a real pickle's requirements look like."""
    from giskard.rpc.v1 import common_pb2

    requirements = common_pb2.Requirements(python="3.11", distributions=distributions)
    spec = common_pb2.JobSpec(info=common_pb2.InfoJob(), requirements=requirements)
    with pytest.raises(GiskardError, match="requirements"):
        client._submit(spec, 0.0, 30.0, None).result(timeout=60)
    assert client.call(len, [1, 2], timeout_s=30) == 2  # the hub and the worker go on


def test_an_input_passed_twice_is_sent_once_and_used_twice(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    big = np.arange(100_000.0)  # over the inline size
    assert client.call(lambda a, b: a + b, 1, 1, timeout_s=30) == 2
    assert client.call(lambda a, b: float((a + b).sum()), big, big, timeout_s=30) == 2 * big.sum()


def test_an_input_larger_than_the_hub_keeps_is_refused_clearly() -> None:
    from giskard.errors import GiskardError

    too_big = r"an input of 2.29 MiB is larger than this hub keeps \(1 MiB\)"
    with (
        Hub(port=0, max_artifact_bytes=1024**2) as small_hub,
        HubClient(small_hub.address) as small_client,
        pytest.raises(GiskardError, match=too_big),
    ):
        small_client.put(np.zeros(300_000))


def test_a_big_result_not_yet_read_holds_back_no_other_job(
    client: HubClient, connected_worker: WorkerProcess, hub: Hub
) -> None:
    big = client.submit(np.ones, 5_000_000)  # 40 MB: 40 result chunks, not read for now
    with HubClient(hub.address) as other:
        began = time.monotonic()
        assert other.call(int, "7", timeout_s=30) == 7
        assert client.call(int, "8", timeout_s=30) == 8  # the same client, read first
        assert time.monotonic() - began < 15
    result = big.result(timeout=60)
    assert result.shape == (5_000_000,) and result.sum() == 5_000_000
