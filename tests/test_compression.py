"""Inputs sent to a worker over a real link are zstd-compressed, negotiated at the hello."""

from __future__ import annotations

import logging
import queue
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pandas as pd
import pytest
import zstandard
from conftest import CONNECTED, WorkerProcess, free_port, giskard_command

from giskard.client import HubClient
from giskard.compression import (
    SKIP_AFTER_MISS,
    ChunkCompressor,
    ChunkDecompressor,
    session_codec,
)
from giskard.errors import ExitCode, UsageError
from giskard.hub import Hub
from giskard.protocol import CHUNK_SIZE, PROTOCOL_VERSION, SESSION_METADATA_KEY
from giskard.rpc.v1 import common_pb2, worker_pb2, worker_pb2_grpc


def realistic_bytes(size: int) -> bytes:
    """Tabular-looking bytes: a few distinct float64 values, as a real dataset's columns."""
    rng = np.random.default_rng(0)
    return rng.choice(np.arange(12.0), size // 8).tobytes()


def random_bytes(size: int) -> bytes:
    return np.random.default_rng(1).bytes(size)


def test_a_chunk_that_shrinks_is_sent_compressed_and_comes_back_the_same() -> None:
    data = realistic_bytes(CHUNK_SIZE)
    compressor = ChunkCompressor("zstd")
    packed, codec = compressor.compress(memoryview(data))
    assert codec == "zstd" and len(packed) < len(data) // 2
    assert ChunkDecompressor(CHUNK_SIZE).data(bytes(packed), codec) == data
    assert (compressor.raw_bytes, compressor.sent_bytes) == (len(data), len(packed))


def test_incompressible_chunks_go_raw_and_the_next_ones_are_not_even_tried() -> None:
    compressor = ChunkCompressor("zstd")
    noise = random_bytes(CHUNK_SIZE)
    assert compressor.compress(noise) == (noise, "")
    # Compressible, but within the skip window: raw without trying; then tried again.
    tabular = realistic_bytes(CHUNK_SIZE)
    codecs = [compressor.compress(tabular)[1] for _ in range(SKIP_AFTER_MISS + 1)]
    assert codecs == [""] * SKIP_AFTER_MISS + ["zstd"]


def test_a_chunk_that_would_decompress_past_a_chunks_size_or_is_corrupt_is_refused() -> None:
    decompressor = ChunkDecompressor(CHUNK_SIZE)
    too_big = zstandard.ZstdCompressor().compress(bytes(CHUNK_SIZE + 1))
    with pytest.raises(ValueError, match="more than"):
        decompressor.data(too_big, "zstd")
    with pytest.raises(ValueError, match=r"more than|does not decompress"):
        decompressor.data(b"\x28\xb5\x2f\xfd garbage", "zstd")
    with pytest.raises(ValueError, match="never offered"):
        decompressor.data(b"x", "brotli")
    assert decompressor.data(b"raw", "") == b"raw"


@pytest.mark.parametrize(
    ("setting", "peer", "decoded", "expected"),
    [
        ("auto", "ipv4:10.1.2.3:40051", ["zstd"], "zstd"),  # a real link
        ("auto", "ipv4:127.0.0.1:40051", ["zstd"], ""),  # loopback: not worth it
        ("auto", "ipv6:[::1]:40051", ["zstd"], ""),
        ("auto", "ipv6:%5B::1%5D:40051", ["zstd"], ""),  # as gRPC writes it
        ("auto", "ipv6:%5B::ffff:127.0.0.1%5D:40051", ["zstd"], ""),
        ("auto", "ipv6:%5B2001:db8::1%5D:40051", ["zstd"], "zstd"),
        ("auto", "unix:/run/user/0/giskard.sock", ["zstd"], ""),
        ("on", "ipv4:127.0.0.1:40051", ["zstd"], "zstd"),
        ("off", "ipv4:10.1.2.3:40051", ["zstd"], ""),
        ("on", "ipv4:10.1.2.3:40051", [], ""),  # a worker that does not decode it
        ("on", "ipv4:10.1.2.3:40051", ["brotli"], ""),
    ],
)
def test_the_hub_compresses_only_where_both_sides_agree_and_the_link_is_real(
    setting: str, peer: str, decoded: list[str], expected: str
) -> None:
    assert session_codec(setting, peer, decoded) == expected


class RawWorker:
    """A worker's session by hand: says in its hello which codecs it decodes, and records
    the welcome and the jobs the hub sends it."""

    def __init__(self, hub: Hub, compression: list[str]) -> None:
        self.messages: queue.Queue[worker_pb2.HubMessage] = queue.Queue()
        self._outbox: queue.Queue[worker_pb2.WorkerMessage | None] = queue.Queue()
        self._channel = grpc.insecure_channel(hub.address)
        self.stub = worker_pb2_grpc.WorkerHubStub(self._channel)
        self._auth = ("authorization", f"Bearer {hub.admin_key}")
        # Each its own host: two of them are two workers, whatever the order they leave in.
        host = f"raw-{secrets.token_hex(4)}"
        info = common_pb2.WorkerInfo(worker_id=host, pid=1, hostname=host)
        hello = worker_pb2.Hello(
            protocol_version=PROTOCOL_VERSION, info=info, compression=compression
        )
        self._outbox.put(worker_pb2.WorkerMessage(hello=hello))
        responses = self.stub.Connect(iter(self._outbox.get, None), metadata=(self._auth,))
        threading.Thread(target=self._read, args=(responses,), daemon=True).start()
        self.welcome = self.next("welcome").welcome

    def _read(self, responses: Iterator[worker_pb2.HubMessage]) -> None:
        try:
            for message in responses:
                self.messages.put(message)
        except grpc.RpcError:
            pass

    def next(self, kind: str) -> worker_pb2.HubMessage:
        while True:
            message = self.messages.get(timeout=30)
            if message.WhichOneof("kind") == kind:
                return message

    def fetch(self, address: str) -> list[worker_pb2.Chunk]:
        session = (SESSION_METADATA_KEY, self.welcome.session_id)
        request = worker_pb2.FetchArtifactRequest(blake3=address)
        return list(self.stub.FetchArtifact(request, metadata=(self._auth, session), timeout=30))

    def close(self) -> None:
        self._outbox.put(None)
        self._channel.close()


@pytest.fixture
def raw_worker(hub: Hub) -> Iterator[Callable[[list[str]], RawWorker]]:
    made: list[RawWorker] = []

    def make(compression: list[str]) -> RawWorker:
        made.append(RawWorker(hub, compression))
        return made[-1]

    yield make
    for worker in made:
        worker.close()


def fetched_input(client: HubClient, worker: RawWorker, blob: bytes) -> list[worker_pb2.Chunk]:
    """The chunks `worker` gets for a job whose input is `blob`."""
    stored = client.put(np.frombuffer(blob, dtype=np.uint8))
    # Built by hand, without the requirements `submit` would add from the pickle: this worker
    # describes no environment, so a job that needs one would never go to it.
    function = client.put(len).ref
    call = common_pb2.CallJob(function=function, args=[common_pb2.Argument(value=stored.ref)])
    # Held until the chunks are in: a dropped handle cancels its job.
    handle = client._submit(common_pb2.JobSpec(call=call), 0.0, 60.0, None)
    job = worker.next("job").job
    (argument,) = job.spec.call.args
    assert argument.value.blake3 == stored.address
    chunks = worker.fetch(stored.address)
    handle.cancel()
    return chunks


def test_a_hub_left_on_auto_does_not_compress_for_a_worker_on_loopback(
    client: HubClient, raw_worker: Callable[[list[str]], RawWorker]
) -> None:
    worker = raw_worker(["zstd"])
    # The default setting ("auto") on loopback: not compressed, though the worker could.
    assert worker.welcome.compression == ""
    chunks = fetched_input(client, worker, realistic_bytes(3 * CHUNK_SIZE))
    assert {c.compression for c in chunks} == {""}


@pytest.mark.parametrize("hub", [{"compression": "on"}], indirect=True)
def test_compression_is_negotiated_both_ways_and_chunks_decompress_to_the_input(
    hub: Hub, client: HubClient, raw_worker: Callable[[list[str]], RawWorker]
) -> None:
    # A worker that does not say it decodes zstd (an older one) gets raw chunks.
    older = raw_worker([])
    assert older.welcome.compression == ""
    blob = realistic_bytes(3 * CHUNK_SIZE + 5)
    chunks = fetched_input(client, older, blob)
    assert {c.compression for c in chunks} == {""}

    worker = raw_worker(["zstd"])  # the latest connected: it gets the next jobs
    assert worker.welcome.compression == "zstd"
    blob = realistic_bytes(3 * CHUNK_SIZE + 7)  # another input: not the one fetched above
    chunks = fetched_input(client, worker, blob)
    assert {c.compression for c in chunks} == {"zstd"}
    assert sum(len(c.data) for c in chunks) < len(blob) // 2
    decompressor = ChunkDecompressor(CHUNK_SIZE)
    restored = b"".join(decompressor.data(c.data, c.compression) for c in chunks)
    # The client put it as an array: the stored artifact is its encoding, which ends with it.
    assert restored.endswith(blob)

    # Random bytes do not shrink: sent raw, byte for byte.
    noise = random_bytes(2 * CHUNK_SIZE)
    chunks = fetched_input(client, worker, noise)
    assert chunks[-1].compression == "" and b"".join(c.data for c in chunks).endswith(noise)


@pytest.mark.parametrize("hub", [{"compression": "on"}], indirect=True)
def test_a_real_worker_predicts_right_from_compressed_inputs(
    hub: Hub,
    client: HubClient,
    start_worker: Callable[..., WorkerProcess],
    breast_cancer: tuple,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="giskard.hub.worker_service")
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port))
    worker.wait_for_output(CONNECTED)
    worker.wait_for_output("inputs zstd-compressed")
    model, data = breast_cancer
    frame = pd.concat([data] * 40, ignore_index=True)  # ~5 MB: several chunks
    np.testing.assert_array_equal(client.predict(model, frame), model.predict(frame))
    sent = [r.args for r in caplog.records if r.getMessage().startswith("Sent an artifact")]
    assert sent, "the hub sent no compressed artifact"
    assert any(sent_bytes < raw_bytes // 2 for raw_bytes, sent_bytes, _ in sent)


def test_an_unknown_compression_setting_is_refused_in_one_line() -> None:
    with pytest.raises(UsageError, match="unknown compression 'fast'"):
        Hub(port=0, compression="fast")
    bad = subprocess.run(
        giskard_command("hub", "start", "-p", str(free_port()), "--compression", "fast"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == ExitCode.USAGE and len(bad.stderr.strip().splitlines()) == 1
    assert "auto, on, off" in bad.stderr
