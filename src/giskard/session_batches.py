"""Batches on a session stream: what waits in a session's outbox goes as one stream message.

gRPC's asyncio layer costs each stream message more than handling a small message does, so a
writer that finds several messages queued sends them together (HubMessage.batch,
WorkerMessage.batch), to a peer that said it accepts batches. A lone message is never held
back to wait for company: only what is already queued joins it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from giskard.protocol import CHUNK_SIZE
from giskard.rpc.v1 import worker_pb2

M = TypeVar("M", worker_pb2.HubMessage, worker_pb2.WorkerMessage)

BATCH_MAX_MESSAGES = 256
# Small messages gain from a batch; a chunk-sized one would only be copied into it, so it goes
# alone. Far below protocol.MAX_MESSAGE_BYTES, which a batch must fit in.
BATCH_MAX_BYTES = CHUNK_SIZE
# What a message adds to its batch beyond its own bytes: its field's tag and length.
_ENVELOPE_BYTES = 8


def hub_batch(messages: list[worker_pb2.HubMessage]) -> worker_pb2.HubMessage:
    return worker_pb2.HubMessage(batch=worker_pb2.HubBatch(messages=messages))


def worker_batch(messages: list[worker_pb2.WorkerMessage]) -> worker_pb2.WorkerMessage:
    return worker_pb2.WorkerMessage(batch=worker_pb2.WorkerBatch(messages=messages))


class OutboxReader(Generic[M]):
    """What a session's writer sends next from `outbox`: its next message, or, once the peer
    accepts batches (`batching`), that message and those queued behind it, as one batch of
    at most BATCH_MAX_MESSAGES and BATCH_MAX_BYTES. None ends the stream, as in the outbox."""

    def __init__(self, outbox: asyncio.Queue[M | None], batch_of: Callable[[list[M]], M]) -> None:
        self._outbox = outbox
        self._batch_of = batch_of
        # Taken from the outbox but past a batch's bound: it goes first next time.
        self._held: list[M | None] = []
        self.batching = False
        self.batches_sent = 0

    async def next(self) -> M | None:
        first = self._held.pop() if self._held else await self._outbox.get()
        if first is None or not self.batching or self._outbox.empty():
            return first
        batch = self._gather(first)
        if len(batch) == 1:
            return first
        self.batches_sent += 1
        return self._batch_of(batch)

    def _gather(self, first: M) -> list[M]:
        batch, size = [first], first.ByteSize() + _ENVELOPE_BYTES
        while (
            len(batch) < BATCH_MAX_MESSAGES
            and size < BATCH_MAX_BYTES  # a big first message goes alone, no need to look
            and not self._outbox.empty()
        ):
            message = self._outbox.get_nowait()
            if message is not None:
                size += message.ByteSize() + _ENVELOPE_BYTES
            if message is None or size > BATCH_MAX_BYTES:
                self._held.append(message)
                break
            batch.append(message)
        return batch
