"""Artifacts a worker of this machine maps from the hub's memory instead of downloading."""

from __future__ import annotations

from giskard.hub.artifacts import ArtifactStore
from giskard.rpc.v1 import worker_pb2


async def shared_answer(
    store: ArtifactStore, request: worker_pb2.FetchArtifactRequest, peer: str
) -> worker_pb2.Chunk | None:
    """Where the caller opens the artifact (see Chunk.shared_path), if it asked and may: its
    call came on the hub's private Unix socket (a 0700 directory: this machine, this user).
    None: send chunks."""
    if not request.shared_memory or not on_private_socket(peer):
        return None
    blob = await store.shared(request.blake3)
    if blob is None:
        return None
    return worker_pb2.Chunk(shared_path=blob.path, shared_inode=blob.inode)


def on_private_socket(peer: str) -> bool:
    """Whether a call came on the hub's private Unix socket (this machine, this user)."""
    # gRPC names a Unix socket's peer "unix:" (clients' sockets have no path); TCP peers are
    # "ipv4:..." or "ipv6:...". The hub listens on no other Unix socket.
    return peer.startswith("unix:")
