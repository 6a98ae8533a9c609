"""What a worker sends is data, never code: the hub and the client never unpickle it."""

from __future__ import annotations

import ast
import logging
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from conftest import WorkerProcess

from giskard.client import HubClient
from giskard.errors import ExitCode, ProtocolError
from giskard.hub import Hub
from giskard.protocol import PROTOCOL_VERSION, digest_of
from giskard.rpc.v1 import common_pb2, worker_pb2, worker_pb2_grpc

SRC = Path(__file__).resolve().parent.parent / "src" / "giskard"


class CreatesFileWhenUnpickled:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.path,))


class RogueWorker:
    """A raw gRPC session that answers every job with `payload`, claiming success."""

    def __init__(
        self, hub: Hub, payload: bytes, protocol_version: int = PROTOCOL_VERSION, key: str = ""
    ):
        self.payload = payload
        self.protocol_version = protocol_version
        self.received: queue.Queue[worker_pb2.HubMessage] = queue.Queue()
        self._outbox: queue.Queue[worker_pb2.WorkerMessage | None] = queue.Queue()
        self._channel = grpc.insecure_channel(hub.address)
        stub = worker_pb2_grpc.WorkerHubStub(self._channel)
        metadata = (("authorization", f"Bearer {key or hub.admin_key}"),)
        self._responses = stub.Connect(iter(self._outbox.get, None), metadata=metadata)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RogueWorker:
        info = common_pb2.WorkerInfo(worker_id="rogue", pid=1, hostname="rogue")
        hello = worker_pb2.Hello(protocol_version=self.protocol_version, info=info)
        self._outbox.put(worker_pb2.WorkerMessage(hello=hello))
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._outbox.put(None)
        self._channel.close()

    def _serve(self) -> None:
        try:
            for message in self._responses:
                self.received.put(message)
                if message.WhichOneof("kind") == "job":
                    self._answer(message.job.job_id)
        except grpc.RpcError:
            pass

    def _answer(self, job_id: str) -> None:
        output = common_pb2.JobOutput(job_id=job_id, chunk=self.payload)
        self._outbox.put(worker_pb2.WorkerMessage(output=output))
        result = common_pb2.ArtifactRef(blake3=digest_of([self.payload])[0], size=len(self.payload))
        end = common_pb2.JobEnd(job_id=job_id, success=common_pb2.JobSuccess(result=result))
        self._outbox.put(worker_pb2.WorkerMessage(end=end))


def test_a_pickle_sent_by_a_worker_is_refused_and_never_runs(
    hub: Hub, client: HubClient, iris: tuple, tmp_path: Path
) -> None:
    control, target = tmp_path / "control", tmp_path / "target"
    # Control: this payload really does run code when unpickled.
    pickle.loads(pickle.dumps(CreatesFileWhenUnpickled(control)))
    assert control.exists()

    model, data = iris
    payload = pickle.dumps(CreatesFileWhenUnpickled(target))
    with RogueWorker(hub, payload), pytest.raises(ProtocolError, match="not valid data"):
        client.predict(model, data, wait_for_worker_s=10)
    assert not target.exists()


def test_a_wrong_protocol_version_is_refused_with_a_reason_on_both_sides(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with RogueWorker(hub, b"", protocol_version=99) as rogue:
        answer = rogue.received.get(timeout=10)
    assert answer.WhichOneof("kind") == "refusal"
    assert answer.refusal.reason == worker_pb2.Refusal.PROTOCOL_VERSION
    assert f"worker speaks v99, this hub speaks v{PROTOCOL_VERSION}" in answer.refusal.message
    assert any("protocol version mismatch" in r.getMessage() for r in caplog.records)


class RefusingHub(worker_pb2_grpc.WorkerHubServicer):
    def Connect(
        self, request_iterator: Iterator[worker_pb2.WorkerMessage], context: grpc.ServicerContext
    ) -> Iterator[worker_pb2.HubMessage]:
        next(request_iterator)
        refusal = worker_pb2.Refusal(
            reason=worker_pb2.Refusal.PROTOCOL_VERSION,
            message="protocol version mismatch: the worker speaks v1, this hub speaks v2",
        )
        yield worker_pb2.HubMessage(refusal=refusal)


def test_the_worker_exits_with_the_configuration_code_when_refused(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    worker_pb2_grpc.add_WorkerHubServicer_to_server(RefusingHub(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        worker = start_worker("-h", "127.0.0.1", "-p", str(port))
        assert worker.process.wait(20) == ExitCode.CONFIG
    finally:
        server.stop(0)
    errors = [line for line in worker.output.splitlines() if " ERROR " in line]
    assert len(errors) == 1
    assert "refused this worker: protocol version mismatch" in errors[0]
    assert "Traceback" not in worker.output


PICKLE_MODULES = {"pickle", "cloudpickle", "dill", "marshal", "shelve", "joblib"}


def _imported_modules(tree: ast.AST) -> set[str]:
    modules = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    modules |= {
        (n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
    }
    return modules


def _unpickling_calls(tree: ast.AST) -> list[str]:
    return [
        f"{n.value.id}.{n.attr}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name)
        and n.value.id in PICKLE_MODULES
        and n.attr in {"loads", "load", "Unpickler"}
    ]


@pytest.mark.parametrize(
    "path",
    [*sorted((SRC / "hub").rglob("*.py")), SRC / "codec.py"],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_hub_and_decoder_import_no_pickle_module(path: Path) -> None:
    assert not PICKLE_MODULES & _imported_modules(ast.parse(path.read_text()))


# What runs a worker's jobs: the hub and its console load none of it, not even indirectly.
WORKER_EXECUTION = ["cloudpickle", "giskard.worker.executor", "giskard.worker.agent"]


def test_the_hub_and_its_console_load_no_unpickler_nor_the_worker_s_execution() -> None:
    code = (
        "import sys, giskard.hub.console.app, giskard.hub\n"
        f"print(sorted(set({WORKER_EXECUTION!r}) & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_the_client_loads_none_of_the_worker_s_execution() -> None:
    """A platform imports HubClient: it needs the worker's info, not what runs jobs."""
    code = (
        "import sys, giskard.client\n"
        "print(sorted(m for m in sys.modules if m.startswith('giskard.worker.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_the_client_only_pickles_never_unpickles() -> None:
    tree = ast.parse((SRC / "client.py").read_text())
    assert _unpickling_calls(tree) == []
