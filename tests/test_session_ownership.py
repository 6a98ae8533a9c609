"""A worker acts for its own session only: a call about another worker's job is refused to
the caller, and the worker that runs the job does not notice."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cloudpickle
import grpc
import numpy as np
import pytest
from conftest import WorkerProcess, wait_until
from test_trust_boundary import RogueWorker

from giskard.client import HubClient
from giskard.hub import Hub
from giskard.protocol import SESSION_METADATA_KEY
from giskard.rpc.v1 import worker_pb2, worker_pb2_grpc

# The worker cannot import this module: its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

RESULT_FLOATS = 512 * 1024  # 4 MiB: sent with SendResult, not inside the job's end


def big_result_once(release: str) -> np.ndarray:
    """Waits for the file `release`, then returns a result too big for the job's end."""
    while not Path(release).exists():
        time.sleep(0.05)
    return np.arange(RESULT_FLOATS, dtype=np.float64)


class Attacker(RogueWorker):
    """A worker with a key of its own and a session of its own, acting on other jobs."""

    def __init__(self, hub: Hub, key: str) -> None:
        super().__init__(hub, b"", key=key)
        self.metadata = (("authorization", f"Bearer {key}"),)
        self.last_details = ""

    def session_id(self) -> str:
        welcome = self.received.get(timeout=10)
        assert welcome.WhichOneof("kind") == "welcome"
        return welcome.welcome.session_id

    def send_result(
        self, job_id: str, session_id: str | None, key: str | None = None
    ) -> grpc.StatusCode:
        metadata = [("authorization", f"Bearer {key}")] if key else list(self.metadata)
        if session_id is not None:
            metadata.append((SESSION_METADATA_KEY, session_id))
        stub = worker_pb2_grpc.WorkerHubStub(self._channel)
        chunks = iter([worker_pb2.ResultChunk(job_id=job_id, data=b"forged" * 1000)])
        with pytest.raises(grpc.RpcError) as refused:
            stub.SendResult(chunks, metadata=metadata, timeout=10)
        self.last_details = refused.value.details()
        return refused.value.code()

    def fetch_artifact(self, address: str, session_id: str) -> grpc.StatusCode:
        stub = worker_pb2_grpc.WorkerHubStub(self._channel)
        request = worker_pb2.FetchArtifactRequest(blake3=address)
        metadata = [*self.metadata, (SESSION_METADATA_KEY, session_id)]
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.FetchArtifact(request, metadata=metadata, timeout=10))
        return refused.value.code()


def running_job(client: HubClient, pid: int) -> str:
    def job_of_the_worker() -> str | None:
        for worker in client.status()["workers"]:
            if worker["pid"] == pid and worker["running"]:
                return worker["running"][0]["job_id"]
        return None

    return str(wait_until(job_of_the_worker, 30, "the job to run on the honest worker"))


def test_a_worker_cannot_send_a_result_for_another_workers_job(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    handle = client.submit_call(big_result_once, [str(release)])
    job_id = running_job(client, connected_worker.process.pid)
    _, key = client.create_key("worker", "attacker")
    with Attacker(hub, key) as attacker:
        own_session = attacker.session_id()
        assert attacker.send_result(job_id, own_session) == grpc.StatusCode.NOT_FOUND
        assert attacker.send_result(job_id, None) == grpc.StatusCode.FAILED_PRECONDITION
        assert attacker.send_result(job_id, "x" * 24) == grpc.StatusCode.NOT_FOUND
        # A session's id is worth nothing with another key than the one that opened it.
        other_key = attacker.send_result("no-such-job", own_session, key=hub.admin_key)
        assert other_key == grpc.StatusCode.NOT_FOUND
        assert "no such worker session" in attacker.last_details
        big = client.put(np.ones(100_000))  # an input of no job of the attacker's
        assert attacker.fetch_artifact(big.address, own_session) == grpc.StatusCode.NOT_FOUND
    release.touch()
    result = handle.result(timeout=60)
    np.testing.assert_array_equal(result, np.arange(RESULT_FLOATS, dtype=np.float64))
    assert connected_worker.process.poll() is None
    assert connected_worker.process.pid in [w["pid"] for w in client.status()["workers"]]
