"""How a job's inputs reach its executor: through the pipe, or through shared memory.

Small inputs go through the pipe, chunk by chunk, straight into the executor's buffer. A big
one (Linux: see giskard.shared_memory) goes into a sealed memfd that the executor maps and
decodes in place: the hub's own memfd when the hub is on this machine (no copy at all), else
one the worker fills from the hub's chunks (one copy instead of the pipe's two). The worker
holds each such blob (`Delivery.held`) until the executor has answered the job: it has
opened it by then.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from giskard import shared_memory
from giskard.compression import ChunkDecompressor
from giskard.errors import ProtocolError
from giskard.protocol import CHUNK_SIZE
from giskard.rpc.v1 import common_pb2, worker_pb2
from giskard.shared_memory import BlobWriter, SealedBlob, SharedMemoryError, Unreachable
from giskard.worker.executor import ExecutorProcess

logger = logging.getLogger(__name__)

# An input's chunks from the hub; True: the worker can map it from the hub's memory instead.
Fetch = Callable[[common_pb2.ArtifactRef, bool], AsyncIterator[worker_pb2.Chunk]]


@dataclass
class Delivery:
    """What sending a job's inputs took, and the blobs to hold until the executor answers."""

    executor_pid: int
    piped_bytes: int = 0
    shared_bytes: int = 0
    from_hub_bytes: int = 0  # of shared_bytes, those mapped from the hub's own memory
    held: list[SealedBlob] = field(default_factory=list)

    def release(self) -> None:
        shared_memory.close_all(self.held)
        self.held.clear()

    def describe(self) -> str:
        text = f"{self.piped_bytes + self.shared_bytes} B sent to executor {self.executor_pid}"
        if self.shared_bytes:
            text += (
                f" ({self.shared_bytes} B shared, {self.from_hub_bytes} B from the hub's memory)"
            )
        return text


def shares(ref: common_pb2.ArtifactRef) -> bool:
    """Whether this input goes to the executor through shared memory."""
    return not ref.inline and shared_memory.worth_sharing(ref.size)


async def send_inputs(
    executor: ExecutorProcess,
    refs: list[common_pb2.ArtifactRef],
    fetch: Fetch,
    delivery: Delivery,
) -> None:
    """Send the inputs to the executor in order; on a failure, tell it to give up the job."""
    for ref in refs:
        try:
            await _send_input(executor, ref, fetch, delivery)
        except ProtocolError as exc:
            await executor.send({"t": "abort", "message": str(exc)})
            return
        except Exception as exc:
            message = f"could not download input {ref.blake3[:12]} from the hub: {exc}"
            await executor.send({"t": "abort", "message": message})
            return


async def _send_input(
    executor: ExecutorProcess, ref: common_pb2.ArtifactRef, fetch: Fetch, delivery: Delivery
) -> None:
    if ref.inline or ref.size == 0:
        if len(ref.inline) != ref.size:
            raise ProtocolError(f"input {ref.blake3[:12]} is not the size it announces")
        if ref.size:
            await executor.send({"t": "chunk"}, ref.inline)
        delivery.piped_bytes += ref.size
        return
    if shares(ref):
        blob = await _shared_blob(ref, fetch, delivery)
        delivery.held.append(blob)
        await executor.send({"t": "shared", "path": blob.path})
        delivery.shared_bytes += ref.size
        return
    async for data in _checked(ref, fetch(ref, False)):
        await executor.send({"t": "chunk"}, data)
    delivery.piped_bytes += ref.size


async def _shared_blob(ref: common_pb2.ArtifactRef, fetch: Fetch, delivery: Delivery) -> SealedBlob:
    """The input in a sealed memfd: the hub's if it offers it and it is the one announced,
    else one filled from the hub's chunks."""
    chunks = fetch(ref, True)
    first = await anext(chunks, None)
    if first is None or not first.shared_path:
        return await _written(ref, _prepend(first, chunks))
    if [extra async for extra in chunks]:
        raise ProtocolError(f"input {ref.blake3[:12]}: the hub sent data beside its memory")
    try:
        blob = SealedBlob.open(first.shared_path, ref.size, first.shared_inode)
    except Unreachable as exc:  # a hub in another pid namespace, say: its bytes will do
        logger.info("Input %s: %s; downloading it instead", ref.blake3[:12], exc)
        return await _written(ref, fetch(ref, False))
    except SharedMemoryError as exc:
        raise ProtocolError(f"input {ref.blake3[:12]} refused: {exc}") from None
    delivery.from_hub_bytes += ref.size
    return blob


async def _written(
    ref: common_pb2.ArtifactRef, chunks: AsyncIterator[worker_pb2.Chunk]
) -> SealedBlob:
    writer = BlobWriter(shared_memory.INPUT_NAME)
    try:
        async for data in _checked(ref, chunks):
            writer.write(data)
        return writer.seal()
    finally:
        writer.close()  # a blob left unsealed (the download failed); nothing once sealed


async def _checked(
    ref: common_pb2.ArtifactRef, chunks: AsyncIterator[worker_pb2.Chunk]
) -> AsyncIterator[bytes]:
    """The chunks' data, decompressed where the hub compressed it (see giskard.compression),
    refused as soon as it is more than announced, or at the end less."""
    received = 0
    decompressor = ChunkDecompressor(CHUNK_SIZE)
    async for chunk in chunks:
        try:
            data = decompressor.data(chunk.data, chunk.compression)
        except ValueError as exc:
            raise ProtocolError(f"input {ref.blake3[:12]}: {exc}") from None
        if received + len(data) > ref.size:
            raise ProtocolError(f"input {ref.blake3[:12]} is larger than announced")
        received += len(data)
        yield data
    if received != ref.size:
        raise ProtocolError(f"input {ref.blake3[:12]} is shorter than announced")


async def _prepend(
    first: worker_pb2.Chunk | None, rest: AsyncIterator[worker_pb2.Chunk]
) -> AsyncIterator[worker_pb2.Chunk]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk
