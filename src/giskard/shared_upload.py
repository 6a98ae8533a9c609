"""How a client on the hub's machine hands it a big input: in a sealed memfd the hub maps
and keeps, instead of a stream of copied chunks (see Upload.shared_path)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from giskard import shared_memory
from giskard.protocol import CHUNK_SIZE, pieces, sha256_of
from giskard.shared_memory import BlobWriter, SealedBlob

Frames = Iterable[bytes | bytearray | memoryview]


def sealed_input(frames: Frames) -> tuple[SealedBlob, str, int]:
    """The concatenated frames in a sealed memfd, with their SHA-256 and size. Each byte is
    read once: a chunk is hashed right after it is written, while still in the CPU's cache."""
    writer = BlobWriter(shared_memory.UPLOAD_NAME)
    try:
        sha256, size = sha256_of(_written(writer, frames))
        return writer.seal(), sha256, size
    except BaseException:
        writer.close()
        raise


def _written(writer: BlobWriter, frames: Frames) -> Iterator[memoryview]:
    for group in pieces(frames, CHUNK_SIZE):
        for view in group:
            writer.write(view)
            yield view
