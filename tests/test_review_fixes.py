"""Regression tests for races and abuse cases: clients that leave mid-result, workers that
leave mid-handshake, slow readers, oversized hellos, hostile worker info, fatal errors
during a job, and revocation across hubs."""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import grpc
import pytest
import remote_models
from conftest import CONNECTED, WorkerProcess, giskard_command, wait_until
from test_trust_boundary import RogueWorker

from giskard import codec
from giskard.client import HubClient
from giskard.errors import ExitCode, JobTimeoutError
from giskard.hub import Hub
from giskard.protocol import PROTOCOL_VERSION, digest_of
from giskard.rpc.v1 import client_pb2, client_pb2_grpc, common_pb2, worker_pb2, worker_pb2_grpc


def auth(hub: Hub) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {hub.admin_key}"),)


def predict_request(client: HubClient, model: object, data: object) -> client_pb2.RunJobRequest:
    model_ref = client._input([cloudpickle.dumps(model)])
    data_ref = client._input(codec.encode(data))
    predict = common_pb2.PredictJob(model=model_ref, data=data_ref, method="predict")
    return client_pb2.RunJobRequest(spec=common_pb2.JobSpec(predict=predict))


def test_a_client_leaving_mid_result_does_not_freeze_the_worker(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple
) -> None:
    _, data = iris
    request = predict_request(client, remote_models.BigResultModel(64), data)
    with grpc.insecure_channel(hub.address) as channel:
        call = client_pb2_grpc.PlatformStub(channel).RunJob(request, metadata=auth(hub))
        kinds = [next(call).WhichOneof("kind"), next(call).WhichOneof("kind")]
        assert kinds == ["output", "output"]
        call.cancel()
    # The worker's session must still relay: the next job finishes.
    assert client.info(timeout_s=20)["pid"] == connected_worker.process.pid


def test_a_slow_reader_gets_every_chunk(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple
) -> None:
    _, data = iris
    request = predict_request(client, remote_models.BigResultModel(24), data)
    received = bytearray()
    with grpc.insecure_channel(hub.address) as channel:
        for event in client_pb2_grpc.PlatformStub(channel).RunJob(request, metadata=auth(hub)):
            if event.WhichOneof("kind") == "output":
                received += event.output.chunk
                time.sleep(0.01)
            elif event.WhichOneof("kind") == "end":
                end = event.end
    assert end.success.result.size == len(received)
    assert end.success.result.blake3 == digest_of([received])[0]


def test_workers_leaving_during_the_handshake_leave_no_ghost(hub: Hub, client: HubClient) -> None:
    hello = worker_pb2.WorkerMessage(
        hello=worker_pb2.Hello(protocol_version=PROTOCOL_VERSION, info=common_pb2.WorkerInfo())
    )
    with grpc.insecure_channel(hub.address) as channel:
        stub = worker_pb2_grpc.WorkerHubStub(channel)
        for _ in range(100):
            call = stub.Connect(iter([hello]), metadata=auth(hub))
            call.cancel()
    wait_until(lambda: client.workers() == [], 15, "every cancelled session to be gone")


def test_an_oversized_hello_is_refused(hub: Hub) -> None:
    info = common_pb2.WorkerInfo(packages={f"p{i}": "1" * 100 for i in range(5000)})
    hello = worker_pb2.WorkerMessage(
        hello=worker_pb2.Hello(protocol_version=PROTOCOL_VERSION, info=info)
    )
    with grpc.insecure_channel(hub.address) as channel:
        answer = next(
            worker_pb2_grpc.WorkerHubStub(channel).Connect(iter([hello]), metadata=auth(hub))
        )
    assert answer.refusal.reason == worker_pb2.Refusal.BAD_HELLO
    assert "larger than" in answer.refusal.message


def test_hostile_worker_info_is_shown_safely(hub: Hub) -> None:
    info = common_pb2.WorkerInfo(
        pid=1, hostname="evil\n\x1b[31mforged", started_at=math.nan, interpreter="x"
    )
    hello = worker_pb2.WorkerMessage(
        hello=worker_pb2.Hello(protocol_version=PROTOCOL_VERSION, info=info)
    )
    outbox: queue.Queue[worker_pb2.WorkerMessage | None] = queue.Queue()
    outbox.put(hello)  # and nothing else: the session stays open
    with grpc.insecure_channel(hub.address) as channel:
        stub = worker_pb2_grpc.WorkerHubStub(channel)
        responses = stub.Connect(iter(outbox.get, None), metadata=auth(hub), timeout=30)
        assert next(responses).WhichOneof("kind") == "welcome"
        result = subprocess.run(
            giskard_command("hub", "workers", "-h", "127.0.0.1", "-p", str(hub.port)),
            capture_output=True,
            text=True,
            timeout=30,
        )
        responses.cancel()
        outbox.put(None)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "evil\\n\\x1b[31mforged" in result.stdout
    assert "started ?" in result.stdout


def test_a_timeout_gives_up_with_a_clear_error(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple, tmp_path: Path
) -> None:
    _, data = iris
    began = time.monotonic()
    with pytest.raises(JobTimeoutError, match="timeout"):
        client.predict(remote_models.SlowModel(tmp_path / "m", 30), data, timeout_s=1)
    assert time.monotonic() - began < 5


def test_a_fatal_error_during_a_job_exits_at_once(
    hub: Hub,
    client: HubClient,
    start_worker: Callable[..., WorkerProcess],
    iris: tuple,
    tmp_path: Path,
) -> None:
    _, key = client.create_key("worker", "fatal-mid-job")
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), api_key=key)
    worker.wait_for_output(CONNECTED)
    _, data = iris
    marker = tmp_path / "started"
    threading.Thread(
        target=lambda: _ignore(lambda: client.predict(remote_models.SlowModel(marker, 600), data)),
        daemon=True,
    ).start()
    wait_until(marker.exists, 10, "the job to start")
    client.revoke_key("fatal-mid-job")
    assert worker.process.wait(10) == ExitCode.CONFIG


def test_revoking_through_one_hub_closes_sessions_on_another(
    client: HubClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    _, key = client.create_key("worker", "shared-home")
    with Hub(port=0) as other:  # same GISKARD_HOME, so the same key file
        worker = start_worker("-h", "127.0.0.1", "-p", str(other.port), api_key=key)
        worker.wait_for_output(CONNECTED)
        client.revoke_key("shared-home")
        assert worker.process.wait(20) == ExitCode.CONFIG


def test_start_d_reports_a_worker_that_dies_at_once(tmp_path: Path, hub: Hub) -> None:
    env = {
        **os.environ,
        "GISKARD_HOME": str(tmp_path / "home"),
        "GISKARD_API_KEY": "gsk_00000000_wrong",
    }
    command = ["worker", "start", "-d", "-h", "127.0.0.1", "-p", str(hub.port)]
    try:
        result = subprocess.run(
            giskard_command(*command, "--backend", "process"),
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert result.returncode == 1
        assert "stopped right after starting" in result.stderr
        assert "unknown API key" in result.stderr  # from the last log lines
    finally:
        subprocess.run(giskard_command("worker", "stop", "-a"), env=env, timeout=60)
    status = subprocess.run(
        giskard_command("worker", "status", "--json"), capture_output=True, text=True, env=env
    )
    assert json.loads(status.stdout) == []


def _ignore(call: Callable[[], object]) -> None:
    with contextlib.suppress(Exception):
        call()


class ScriptedWorker(RogueWorker):
    """A raw worker session that answers nothing by itself: the test says what it sends."""

    def _answer(self, job_id: str) -> None:
        pass

    def next_job_id(self, timeout_s: float = 20) -> str:
        while (message := self.received.get(timeout=timeout_s)).WhichOneof("kind") != "job":
            pass
        return message.job.job_id

    def end(self, job_id: str, payload: bytes) -> None:
        address = digest_of([payload])[0]
        result = common_pb2.ArtifactRef(blake3=address, size=len(payload), inline=payload)
        end = common_pb2.JobEnd(job_id=job_id, success=common_pb2.JobSuccess(result=result))
        self._outbox.put(worker_pb2.WorkerMessage(end=end))


def run_info_job(channel: grpc.Channel, hub: Hub, job_id: str) -> Any:
    request = client_pb2.RunJobRequest(spec=common_pb2.JobSpec(info=common_pb2.InfoJob()))
    request.job_id, request.wait_for_worker_s = job_id, 20
    return client_pb2_grpc.PlatformStub(channel).RunJob(request, metadata=auth(hub), timeout=30)


def result_of(call: Any) -> bytes:
    for event in call:
        if event.WhichOneof("kind") == "end":
            return event.end.success.result.inline
    raise AssertionError("no end")


def test_a_job_id_used_again_never_gets_the_earlier_jobs_end(hub: Hub) -> None:
    with ScriptedWorker(hub, b"") as worker, grpc.insecure_channel(hub.address) as channel:
        first = run_info_job(channel, hub, "reused-id-1")
        first_dispatch = worker.next_job_id()
        with pytest.raises(grpc.RpcError) as open_call:  # the same key, while its call is open
            next(run_info_job(channel, hub, "reused-id-1"))
        assert open_call.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        worker.end(first_dispatch, b"OLD")
        assert result_of(first) == b"OLD"

        second = run_info_job(channel, hub, "reused-id-1")  # ended: the id may come again
        second_dispatch = worker.next_job_id()
        assert second_dispatch != first_dispatch
        # The first end again (a worker re-sending what a dropped connection may have lost):
        # it must not end the second job.
        worker.end(first_dispatch, b"OLD")
        worker.end(second_dispatch, b"NEW")
        assert result_of(second) == b"NEW"
