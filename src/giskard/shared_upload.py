"""How a client on the hub's machine hands it a big input: in a sealed memfd the hub maps
and keeps, instead of a stream of copied chunks (see Upload.shared_path)."""

from __future__ import annotations

from collections.abc import Iterable

from giskard import shared_memory
from giskard.protocol import CHUNK_SIZE, pieces
from giskard.shared_memory import BlobWriter, SealedBlob

Frames = Iterable[bytes | bytearray | memoryview]


def sealed_input(frames: Frames) -> SealedBlob:
    """The concatenated frames in a sealed memfd."""
    writer = BlobWriter(shared_memory.UPLOAD_NAME)
    try:
        for group in pieces(frames, CHUNK_SIZE):
            for view in group:
                writer.write(view)
        return writer.seal()
    except BaseException:
        writer.close()
        raise
