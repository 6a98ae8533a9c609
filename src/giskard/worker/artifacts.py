"""Getting a job's inputs: download from the hub, integrity check, deserialised-model cache."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from typing import Any

from giskard.errors import ProtocolError
from giskard.rpc.v1 import common_pb2, worker_pb2, worker_pb2_grpc

logger = logging.getLogger(__name__)


async def fetch_artifact(
    stub: worker_pb2_grpc.WorkerHubStub,
    ref: common_pb2.ArtifactRef,
    metadata: tuple[tuple[str, str], ...] = (),
) -> bytearray:
    """Download an artifact and check that it is what the job announced."""
    buffer = bytearray()
    request = worker_pb2.FetchArtifactRequest(sha256=ref.sha256)
    async for chunk in stub.FetchArtifact(request, metadata=metadata):
        buffer += chunk.data
        if len(buffer) > ref.size:
            raise ProtocolError(f"artifact {ref.sha256[:12]} is larger than announced")
    if len(buffer) != ref.size or hashlib.sha256(buffer).hexdigest() != ref.sha256:
        raise ProtocolError(f"artifact {ref.sha256[:12]} does not match its SHA-256")
    return buffer


class ModelCache:
    """Deserialised models by the SHA-256 of their pickle, least recently used evicted first.

    Bounded by the total size of the pickles, a cheap stand-in for the models' memory.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._models: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._size = 0
        # Jobs may run in threads; the cache is shared.
        self._lock = threading.Lock()

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self._models

    def get(self, sha256: str) -> Any | None:
        with self._lock:
            entry = self._models.get(sha256)
            if entry is None:
                return None
            self._models.move_to_end(sha256)
            return entry[0]

    def put(self, sha256: str, model: Any, size: int) -> None:
        with self._lock:
            if sha256 in self._models:
                return
            self._models[sha256] = (model, size)
            self._size += size
            # Keep at least the newest model even when it alone exceeds the bound.
            while self._size > self.max_bytes and len(self._models) > 1:
                _, (_, evicted_size) = self._models.popitem(last=False)
                self._size -= evicted_size
