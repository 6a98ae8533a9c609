"""Artifacts a client of this machine hands the hub in its own sealed memfd instead of
uploading them (see Upload.shared_path): checked and hashed, then kept without a copy."""

from __future__ import annotations

import asyncio
import re

from giskard import shared_memory
from giskard.hub.shared_artifacts import on_private_socket
from giskard.protocol import digest_of
from giskard.rpc.v1 import client_pb2
from giskard.shared_memory import SealedBlob, SharedMemoryError, Unreachable

# Where a client holds the memfd it offers: nothing else is ever opened.
_DESCRIPTOR_PATH = re.compile(r"/proc/[0-9]+/fd/[0-9]+")


async def take_shared(offer: client_pb2.Upload, peer: str) -> tuple[SealedBlob, str]:
    """The memfd the client offers, opened and checked (sealed, of the announced size and
    inode), with the BLAKE3 of its bytes, computed here: the client's is only a claim.
    Unreachable if it cannot be opened from here; SharedMemoryError if it is not a valid
    offer."""
    if not on_private_socket(peer) or not shared_memory.available():
        raise Unreachable("this hub takes shared memory only on its private socket, on Linux")
    if not _DESCRIPTOR_PATH.fullmatch(offer.shared_path):
        raise SharedMemoryError("a shared upload names a /proc/<pid>/fd/<n> descriptor")
    if not offer.ref.size or offer.data:
        raise SharedMemoryError("a shared upload announces its size and carries no data")
    # Off the event loop: hashing hundreds of MiB takes a while (BLAKE3 lets go of the GIL).
    return await asyncio.to_thread(_opened, offer)


def _opened(offer: client_pb2.Upload) -> tuple[SealedBlob, str]:
    blob = SealedBlob.open(offer.shared_path, offer.ref.size, offer.shared_inode)
    try:
        address, _ = digest_of([blob.map()])
    except BaseException:
        blob.close()
        raise
    return blob, address
