"""A client on the hub's machine hands it a big input as a sealed memfd instead of chunks."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import WorkerProcess
from test_shared_memory import (
    assert_mapped_from_hub,
    big_frame,
    local_worker,  # noqa: F401 - a fixture, for the test of a worker of this machine
    sealed_memfd,
    unsealed_memfd,
)

from giskard import shared_memory
from giskard.client import HubClient
from giskard.credentials import local_socket_path
from giskard.hub import platform_service
from giskard.hub.server import Hub
from giskard.protocol import digest_of
from giskard.rpc.v1 import client_pb2, client_pb2_grpc, common_pb2

pytestmark = pytest.mark.skipif(not shared_memory.available(), reason="memfds are Linux's")

TOOK_SHARED = "from the client's shared memory"
SIZE = 3 * shared_memory.MIN_BYTES


@pytest.fixture
def hub_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """The hub's debug lines about uploads (the hub runs in this process)."""
    caplog.set_level(logging.DEBUG, logger=platform_service.__name__)
    return caplog


def shared_uploads(caplog: pytest.LogCaptureFixture) -> int:
    return sum(TOOK_SHARED in record.getMessage() for record in caplog.records)


def upload_memfds() -> set[int]:
    """This process's descriptors of memfds made for uploads (the hub's among them: it runs
    in this process)."""
    return {
        int(link.name)
        for link in Path("/proc/self/fd").iterdir()
        if shared_memory.UPLOAD_NAME in _link(link)
    }


def _link(path: Path) -> str:
    try:
        return os.readlink(path)
    except FileNotFoundError:  # the descriptor iterdir used
        return ""


def test_a_big_frame_from_this_machine_goes_through_shared_memory(
    hub: Hub,
    client: HubClient,
    local_worker: WorkerProcess,  # noqa: F811 - the fixture
    iris: tuple,
    hub_log: pytest.LogCaptureFixture,
) -> None:
    model, data = iris
    frame = big_frame(data)
    before = upload_memfds()
    np.testing.assert_array_equal(client.predict(model, frame), model.predict(frame))
    assert shared_uploads(hub_log) == 1  # the frame; the model is small enough to go inline
    # One descriptor is left, the hub's: the client let go of its own once the hub had it.
    assert len(upload_memfds() - before) == 1
    # The hub kept it: the same frame is not uploaded again, and predicts right again.
    np.testing.assert_array_equal(client.predict(model, frame), model.predict(frame))
    assert shared_uploads(hub_log) == 1
    # The worker mapped the client's memfd, which the hub keeps: no copy on the way.
    assert_mapped_from_hub(local_worker)


def test_a_client_over_tcp_uploads_chunks(
    hub: Hub, connected_worker: WorkerProcess, iris: tuple, hub_log: pytest.LogCaptureFixture
) -> None:
    model, data = iris
    frame = big_frame(data)
    with HubClient(hub.address, api_key=hub.admin_key) as remote:
        np.testing.assert_array_equal(remote.predict(model, frame), model.predict(frame))
    assert shared_uploads(hub_log) == 0


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (grpc.StatusCode.FAILED_PRECONDITION, "another pid namespace"),
        (grpc.StatusCode.DATA_LOSS, "size or BLAKE3 mismatch"),  # a hub without the field
    ],
)
def test_a_hub_that_does_not_take_the_memfd_gets_chunks(
    client: HubClient,
    connected_worker: WorkerProcess,
    iris: tuple,
    monkeypatch: pytest.MonkeyPatch,
    code: grpc.StatusCode,
    message: str,
) -> None:
    async def refuse(
        self: object, offer: client_pb2.Upload, context: grpc.aio.ServicerContext
    ) -> None:
        await context.abort(code, message)

    monkeypatch.setattr(platform_service.PlatformService, "_take_shared", refuse)
    model, data = iris
    frame = big_frame(data)
    before = upload_memfds()
    np.testing.assert_array_equal(client.predict(model, frame), model.predict(frame))
    assert upload_memfds() - before == set()  # the client let go of its memfd


def test_a_hub_that_holds_all_the_memfds_it_may_gets_chunks(
    client: HubClient,
    connected_worker: WorkerProcess,
    iris: tuple,
    monkeypatch: pytest.MonkeyPatch,
    hub_log: pytest.LogCaptureFixture,
) -> None:
    from giskard.hub import artifacts

    # Each memfd (and each mapping) is a descriptor the hub holds: past its cap, data it is.
    monkeypatch.setattr(artifacts, "MAX_SHARED_BLOBS", 0)
    model, data = iris
    frame = big_frame(data)
    np.testing.assert_array_equal(client.predict(model, frame), model.predict(frame))
    assert shared_uploads(hub_log) == 0


DATA = b"x" * SIZE
ADDRESS = digest_of([DATA])[0]


@pytest.mark.parametrize(
    ("offered", "code", "refusal"),
    [
        (lambda: unsealed_memfd(SIZE), grpc.StatusCode.INVALID_ARGUMENT, "not sealed"),
        (lambda: sealed_memfd(SIZE - 1), grpc.StatusCode.INVALID_ARGUMENT, "bytes, not"),
        (
            lambda: shared_memory.SealedBlob.of("giskard-test", b"y" * SIZE),
            grpc.StatusCode.DATA_LOSS,
            "BLAKE3 mismatch",
        ),
    ],
)
def test_the_hub_refuses_a_forged_shared_upload(
    hub: Hub, offered: object, code: grpc.StatusCode, refusal: str
) -> None:
    blob = offered()  # type: ignore[operator]
    ref = common_pb2.ArtifactRef(blake3=ADDRESS, size=SIZE)
    offer = client_pb2.Upload(ref=ref, shared_path=blob.path, shared_inode=blob.inode)
    with private_stub(hub) as (stub, metadata):
        with pytest.raises(grpc.RpcError) as refused:
            stub.UploadArtifact(iter([offer]), metadata=metadata, timeout=30)
        missing = stub.MissingArtifacts(
            client_pb2.ArtifactList(artifacts=[ref]), metadata=metadata, timeout=30
        )
    assert refused.value.code() == code
    assert refusal in refused.value.details()
    assert list(missing.artifacts) == [ref]  # nothing was stored under that address


def test_the_hub_opens_no_path_but_a_descriptor(hub: Hub, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would wait for a writer
    ref = common_pb2.ArtifactRef(blake3=ADDRESS, size=SIZE)
    offer = client_pb2.Upload(ref=ref, shared_path=str(fifo))
    with private_stub(hub) as (stub, metadata), pytest.raises(grpc.RpcError) as refused:
        stub.UploadArtifact(iter([offer]), metadata=metadata, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "/proc/<pid>/fd/<n>" in refused.value.details()


def test_the_hub_follows_no_descriptor_named_over_tcp(hub: Hub) -> None:
    blob = shared_memory.SealedBlob.of("giskard-test", DATA)
    ref = common_pb2.ArtifactRef(blake3=ADDRESS, size=SIZE)
    offer = client_pb2.Upload(ref=ref, shared_path=blob.path, shared_inode=blob.inode)
    metadata = (("authorization", f"Bearer {hub.admin_key}"),)
    with grpc.insecure_channel(hub.address) as channel:
        stub = client_pb2_grpc.PlatformStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.UploadArtifact(iter([offer]), metadata=metadata, timeout=30)
        missing = stub.MissingArtifacts(
            client_pb2.ArtifactList(artifacts=[ref]), metadata=metadata, timeout=30
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert list(missing.artifacts) == [ref]


@contextlib.contextmanager
def private_stub(hub: Hub) -> Iterator[tuple[client_pb2_grpc.PlatformStub, tuple]]:
    """A raw stub on the hub's private socket, with the local admin key."""
    metadata = (("authorization", f"Bearer {hub.admin_key}"),)
    with grpc.insecure_channel(f"unix:{local_socket_path(hub.port)}") as channel:
        yield client_pb2_grpc.PlatformStub(channel), metadata
