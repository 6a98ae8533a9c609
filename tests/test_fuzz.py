"""Adversarial input to both of the hub's faces, for a bounded time, while a real worker and
a real client keep working and the hub's memory stays bounded."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import time
from collections.abc import Iterator

import grpc
import numpy as np
import psutil
import pytest
from conftest import giskard_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from giskard.client import HubClient
from giskard.hub import Hub
from giskard.protocol import CHUNK_SIZE, PROTOCOL_VERSION
from giskard.rpc.v1 import client_pb2, client_pb2_grpc, common_pb2, worker_pb2, worker_pb2_grpc

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same inputs in every run: a failure here is reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

job_ids = st.one_of(st.text(max_size=40), st.sampled_from(["", "x" * 1000]))
small_bytes = st.binary(max_size=4096)
chunks = st.one_of(small_bytes, st.just(b"c" * (CHUNK_SIZE + 1)))
refs = st.builds(
    common_pb2.ArtifactRef,
    blake3=st.one_of(st.text(max_size=70), st.just("0" * 64)),
    size=st.integers(0, 2**64 - 1),
)
outputs = st.builds(common_pb2.JobOutput, job_id=job_ids, chunk=chunks)
ends = st.one_of(
    st.builds(common_pb2.JobEnd, job_id=job_ids),
    st.builds(
        common_pb2.JobEnd,
        job_id=job_ids,
        success=st.builds(common_pb2.JobSuccess, result=refs),
    ),
    st.builds(
        common_pb2.JobEnd,
        job_id=job_ids,
        failure=st.builds(common_pb2.JobFailure, type=st.text(), message=st.text()),
    ),
)
worker_messages = st.one_of(
    st.builds(worker_pb2.WorkerMessage, output=outputs),
    st.builds(worker_pb2.WorkerMessage, end=ends),
    st.builds(worker_pb2.WorkerMessage, draining=st.just(worker_pb2.Draining())),
    st.builds(
        worker_pb2.WorkerMessage,
        hello=st.builds(worker_pb2.Hello, protocol_version=st.integers(0, 2**32 - 1)),
    ),
    st.just(worker_pb2.WorkerMessage()),
)
specs = st.one_of(
    st.just(common_pb2.JobSpec()),
    st.builds(common_pb2.JobSpec, info=st.just(common_pb2.InfoJob())),
    st.builds(
        common_pb2.JobSpec,
        predict=st.builds(common_pb2.PredictJob, model=refs, data=refs, method=st.text()),
    ),
)


@pytest.fixture(scope="module")
def fuzzed_hub() -> Iterator[Hub]:
    with Hub(port=0) as hub:
        yield hub


@pytest.fixture(scope="module", autouse=True)
def real_worker(fuzzed_hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real worker connected before the fuzzing starts, and through all of it."""
    from conftest import CONNECTED, local_admin_key, wait_until

    log = tmp_path_factory.mktemp("fuzz") / "worker.log"
    env = {**os.environ, "GISKARD_API_KEY": local_admin_key() or ""}
    env["GISKARD_HOME"] = str(log.parent)
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            giskard_command("worker", "start", "-h", "127.0.0.1", "-p", str(fuzzed_hub.port)),
            stdin=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
    wait_until(lambda: CONNECTED in log.read_text(), 15, "the real worker")
    yield process
    process.terminate()
    process.wait(30)


@pytest.fixture(scope="module")
def channel(fuzzed_hub: Hub) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(fuzzed_hub.address) as opened:
        yield opened


def metadata(hub: Hub) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {hub.admin_key}"),)


# The statuses the hub answers with on purpose. Anything else (UNKNOWN or INTERNAL from a
# servicer that raised, DEADLINE_EXCEEDED from one that hung) is a defect the fuzzing found.
DELIBERATE = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.DATA_LOSS,
    }
)
# Long enough that only a hang reaches it, even on a busy machine.
CALL_TIMEOUT_S = 30


@contextlib.contextmanager
def answered_deliberately() -> Iterator[None]:
    """The call inside succeeds or fails with a deliberate status."""
    try:
        yield
    except grpc.RpcError as exc:
        assert exc.code() in DELIBERATE, f"{exc.code().name}: {exc.details()}"


def rss() -> int:
    return psutil.Process().memory_info().rss


def run_session(channel: grpc.Channel, hub: Hub, messages: list[worker_pb2.WorkerMessage]) -> None:
    """A worker session that says hello, then sends `messages`, then hangs up."""
    outbox: queue.Queue[worker_pb2.WorkerMessage | None] = queue.Queue()
    hello = worker_pb2.Hello(protocol_version=PROTOCOL_VERSION, info=common_pb2.WorkerInfo())
    for message in (worker_pb2.WorkerMessage(hello=hello), *messages, None):
        outbox.put(message)
    responses = worker_pb2_grpc.WorkerHubStub(channel).Connect(
        iter(outbox.get, None), metadata=metadata(hub), timeout=CALL_TIMEOUT_S
    )
    with answered_deliberately():
        for _ in responses:
            pass


@FUZZ
@given(messages=st.lists(worker_messages, max_size=20))
def test_worker_facing_service(
    fuzzed_hub: Hub, channel: grpc.Channel, messages: list[worker_pb2.WorkerMessage]
) -> None:
    run_session(channel, fuzzed_hub, messages)


@FUZZ
@given(garbage=st.lists(st.binary(min_size=1, max_size=512), min_size=1, max_size=5))
def test_undecodable_bytes_to_every_method(
    fuzzed_hub: Hub, channel: grpc.Channel, garbage: list[bytes]
) -> None:
    for path in (
        "/giskard.rpc.v1.WorkerHub/Connect",
        "/giskard.rpc.v1.Platform/UploadArtifact",
    ):
        call = channel.stream_stream(path)
        with answered_deliberately():
            for _ in call(iter(garbage), metadata=metadata(fuzzed_hub), timeout=CALL_TIMEOUT_S):
                pass
    for path in ("/giskard.rpc.v1.Platform/MissingArtifacts", "/giskard.rpc.v1.Admin/CreateKey"):
        call = channel.unary_unary(path)
        with answered_deliberately():
            call(garbage[0], metadata=metadata(fuzzed_hub), timeout=CALL_TIMEOUT_S)


@FUZZ
@given(
    spec=specs,
    wait_s=st.one_of(st.floats(-1e9, 0.2), st.just(float("nan"))),
    uploads=st.lists(st.builds(client_pb2.Upload, ref=refs, data=small_bytes), max_size=4),
)
def test_client_facing_service(
    fuzzed_hub: Hub,
    channel: grpc.Channel,
    spec: common_pb2.JobSpec,
    wait_s: float,
    uploads: list[client_pb2.Upload],
) -> None:
    stub = client_pb2_grpc.PlatformStub(channel)
    request = client_pb2.RunJobRequest(spec=spec, wait_for_worker_s=wait_s)
    for call in (
        lambda: list(stub.RunJob(request, metadata=metadata(fuzzed_hub), timeout=CALL_TIMEOUT_S)),
        lambda: stub.UploadArtifact(
            iter(uploads), metadata=metadata(fuzzed_hub), timeout=CALL_TIMEOUT_S
        ),
        lambda: stub.MissingArtifacts(
            client_pb2.ArtifactList(artifacts=[u.ref for u in uploads]),
            metadata=metadata(fuzzed_hub),
            timeout=CALL_TIMEOUT_S,
        ),
    ):
        with answered_deliberately():
            call()


def test_after_the_fuzzing_the_real_worker_and_a_client_still_work(
    fuzzed_hub: Hub, real_worker: subprocess.Popen[bytes], iris: tuple
) -> None:
    assert real_worker.poll() is None
    model, data = iris
    with HubClient(fuzzed_hub.address) as client:
        (active,) = [w for w in client.workers() if w["active"]]
        assert active["pid"] == real_worker.pid
        np.testing.assert_array_equal(client.predict(model, data), model.predict(data))


@pytest.fixture(scope="module", autouse=True)
def memory_stays_bounded() -> Iterator[None]:
    before = rss()
    began = time.monotonic()
    yield
    growth = rss() - before
    assert growth < 300 * 1024**2, f"the hub's process grew by {growth / 1024**2:.0f} MiB"
    assert time.monotonic() - began < 300
