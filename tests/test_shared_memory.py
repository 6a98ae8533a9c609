"""Big inputs reach executors through sealed memfds instead of pipes and streams (Linux)."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from conftest import CONNECTED, WorkerProcess, wait_until
from remote_models import SlowModel

from giskard import shared_memory
from giskard.client import HubClient
from giskard.errors import ExecutorCrashedError, WorkerLostError
from giskard.hub.artifacts import ArtifactStore
from giskard.hub.server import Hub
from giskard.protocol import digest_of
from giskard.rpc.v1 import client_pb2, client_pb2_grpc, common_pb2, worker_pb2

pytestmark = pytest.mark.skipif(not shared_memory.available(), reason="memfds are Linux's")

SHARED = re.compile(r"(\d+) B shared, (\d+) B from the hub.s memory")


def big_frame(data: pd.DataFrame) -> pd.DataFrame:
    """The features repeated to several MiB: well past shared_memory.MIN_BYTES."""
    frame = pd.concat([data] * 700, ignore_index=True)
    assert frame.memory_usage().sum() > 2 * shared_memory.MIN_BYTES
    return frame


def shared_counts(worker: WorkerProcess) -> list[tuple[int, int]]:
    """(bytes shared, of which the hub's own memory) of each job the worker ran."""
    return [(int(a), int(b)) for a, b in SHARED.findall(worker.output)]


def assert_mapped_from_hub(worker: WorkerProcess) -> None:
    """The worker's one job that moved its input took it all from the hub's memory."""
    [(shared, from_hub)] = shared_counts(worker)
    assert shared == from_hub > 2 * shared_memory.MIN_BYTES


@pytest.fixture
def local_worker(
    hub: Hub, start_worker: Callable[..., WorkerProcess], _giskard_home: Path
) -> WorkerProcess:
    """A worker that finds the hub's key in the GISKARD_HOME they share, and so dials its
    private Unix socket, as `giskard worker start` does with no flags."""
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), home=_giskard_home, api_key="")
    worker.wait_for_output(CONNECTED)
    return worker


def test_a_local_worker_maps_a_big_frame_from_the_hubs_memory(
    hub: Hub, client: HubClient, local_worker: WorkerProcess, iris: tuple
) -> None:
    model, data = iris
    frame = big_frame(data)
    expected = model.predict(frame)
    np.testing.assert_array_equal(client.predict(model, frame), expected)
    # Again: the executor decodes nothing anew, its cached frame still maps the memfd.
    np.testing.assert_array_equal(client.predict(model, frame), expected)
    local_worker.wait_for_output("2 of 2 input(s) cached")
    assert_mapped_from_hub(local_worker)


def test_a_big_model_is_unpickled_from_the_hubs_memory(
    client: HubClient, local_worker: WorkerProcess, iris: tuple
) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    _, data = iris
    frame = big_frame(data)
    # A nearest-neighbours model keeps its training frame: its pickle is several MiB.
    model = KNeighborsClassifier(n_neighbors=1).fit(frame, np.arange(len(frame)) % 3)
    np.testing.assert_array_equal(client.predict(model, data), model.predict(data))
    assert_mapped_from_hub(local_worker)


def test_a_remote_worker_gets_chunks_and_shares_them_with_its_executor(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple
) -> None:
    model, data = iris
    frame = big_frame(data)
    np.testing.assert_array_equal(client.predict(model, frame), model.predict(frame))
    [(shared, from_hub)] = shared_counts(connected_worker)
    assert shared > 2 * shared_memory.MIN_BYTES
    assert from_hub == 0  # over TCP the hub streams chunks


def test_an_executor_killed_with_a_mapped_input_leaks_no_memory(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple, tmp_path: Path
) -> None:
    model, data = iris
    frame = big_frame(data)
    marker = tmp_path / "started"
    handle = client.submit_predict(SlowModel(marker, 600), frame)
    wait_until(marker.exists, 60, "the job to start")
    executor = int(marker.read_text())
    [inode] = memfd_inodes(executor, "maps")  # the frame, mapped, in the worker's own memfd
    os.kill(executor, signal.SIGKILL)
    with pytest.raises(ExecutorCrashedError):
        handle.result(timeout=60)
    # The worker goes on, and the next job gets its input again, right.
    np.testing.assert_array_equal(client.predict(model, frame), model.predict(frame))
    # Nobody holds the killed executor's memfd any more: the kernel has freed it.
    holders = [pid for pid in user_pids() if inode in all_memfd_inodes(pid)]
    assert holders == []
    # And the worker keeps no descriptor of a job's input once the job has ended.
    assert memfd_inodes(connected_worker.process.pid, "fd") == set()


# What a rogue hub offers instead of its memfd: (what to keep open, path, inode).
Offer = tuple[object, str, int]


def offering(blob: shared_memory.SealedBlob, inode_offset: int = 0) -> Offer:
    return blob, blob.path, blob.inode + inode_offset


@pytest.mark.parametrize(
    ("offered", "refusal"),
    [
        (lambda size: offering(unsealed_memfd(size)), "not sealed against changes"),
        (lambda size: offering(sealed_memfd(size - 1)), "bytes, not"),
    ],
)
def test_the_worker_refuses_a_hub_memfd_that_is_not_sealed_or_not_the_size(
    client: HubClient,
    connected_worker: WorkerProcess,
    iris: tuple,
    monkeypatch: pytest.MonkeyPatch,
    offered: Callable[[int], Offer],
    refusal: str,
) -> None:
    model, data = iris
    frame = big_frame(data)
    offer_instead(monkeypatch, offered)
    with pytest.raises(WorkerLostError, match=refusal):
        client.predict(model, frame)
    monkeypatch.undo()
    np.testing.assert_array_equal(client.predict(model, frame), model.predict(frame))


@pytest.mark.parametrize(
    "offered",
    [
        lambda size: (None, f"/proc/{os.getpid()}/fd/1000000", 0),  # no such descriptor
        lambda size: offering(sealed_memfd(size), inode_offset=1),  # another process's file
    ],
)
def test_a_hub_memfd_out_of_reach_is_downloaded_instead(
    client: HubClient,
    connected_worker: WorkerProcess,
    iris: tuple,
    monkeypatch: pytest.MonkeyPatch,
    offered: Callable[[int], Offer],
) -> None:
    """As for a worker in another pid namespace than the hub's."""
    model, data = iris
    frame = big_frame(data)
    offer_instead(monkeypatch, offered)
    np.testing.assert_array_equal(client.predict(model, frame), model.predict(frame))
    connected_worker.wait_for_output("downloading it instead")


def offer_instead(monkeypatch: pytest.MonkeyPatch, offered: Callable[[int], Offer]) -> None:
    """Make the hub answer each request for a big input through shared memory with
    `offered(size)` instead of its own memfd."""
    held: list[object] = []

    async def rogue_answer(
        store: ArtifactStore, request: worker_pb2.FetchArtifactRequest, peer: str
    ) -> worker_pb2.Chunk | None:
        blob = store.get(request.blake3)
        if not request.shared_memory or blob is None or len(blob) < shared_memory.MIN_BYTES:
            return None
        kept, path, inode = offered(len(blob))
        held.append(kept)  # open while the worker opens it
        return worker_pb2.Chunk(shared_path=path, shared_inode=inode)

    monkeypatch.setattr("giskard.hub.worker_service.shared_answer", rogue_answer)


@pytest.mark.parametrize(
    ("data", "announced_size"),
    [
        (b"corrupted" + b"x" * (3 * shared_memory.MIN_BYTES), None),  # a changed chunk
        (b"x" * (2 * shared_memory.MIN_BYTES), 3 * shared_memory.MIN_BYTES),  # truncated
    ],
)
def test_the_hub_refuses_an_upload_whose_bytes_do_not_match_its_hash(
    hub: Hub, data: bytes, announced_size: int | None
) -> None:
    original = b"x" * (3 * shared_memory.MIN_BYTES + 9)
    ref = common_pb2.ArtifactRef(blake3=digest_of([original])[0], size=announced_size or len(data))
    uploads = [client_pb2.Upload(ref=ref)]
    uploads += [
        client_pb2.Upload(data=data[start : start + shared_memory.MIN_BYTES])
        for start in range(0, len(data), shared_memory.MIN_BYTES)
    ]
    metadata = (("authorization", f"Bearer {hub.admin_key}"),)
    with grpc.insecure_channel(hub.address) as channel:
        stub = client_pb2_grpc.PlatformStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.UploadArtifact(iter(uploads), metadata=metadata, timeout=30)
        missing = stub.MissingArtifacts(
            client_pb2.ArtifactList(artifacts=[ref]), metadata=metadata, timeout=30
        )
    assert refused.value.code() == grpc.StatusCode.DATA_LOSS
    assert list(missing.artifacts) == [ref]  # nothing was stored under that address


def sealed_memfd(size: int) -> shared_memory.SealedBlob:
    return shared_memory.SealedBlob.of("giskard-test", b"x" * size)


def unsealed_memfd(size: int) -> shared_memory.SealedBlob:
    """A memfd of `size` bytes that anyone holding it may still change."""
    fd = os.memfd_create("giskard-test", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    return shared_memory.SealedBlob(fd)


def memfd_inodes(pid: int, where: str) -> set[int]:
    """The inodes of giskard's memfds that `pid` holds: as descriptors ("fd") or mapped
    ("maps")."""
    return _memfds(pid, where, "memfd:giskard")


def all_memfd_inodes(pid: int) -> set[int]:
    return _memfds(pid, "fd", "memfd:") | _memfds(pid, "maps", "memfd:")


def _memfds(pid: int, where: str, prefix: str) -> set[int]:
    inodes: set[int] = set()
    try:
        if where == "maps":
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].startswith(f"/{prefix}"):
                    inodes.add(int(fields[4]))
            return inodes
        for link in Path(f"/proc/{pid}/fd").iterdir():
            if os.readlink(link).startswith(f"/{prefix}"):
                inodes.add(link.stat().st_ino)
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        pass  # a process that ended as we looked
    return inodes


def user_pids() -> list[int]:
    uid = os.getuid()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except FileNotFoundError:
                pass
    return pids
