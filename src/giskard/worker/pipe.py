"""Messages between the worker and its executor processes, over a pair of pipes.

A message is a small JSON header and an optional binary payload:

    header_len uint32 | payload_len uint32 | header (UTF-8 JSON) | payload

The executor's side is blocking (`PipeIn`, `PipeOut`); the worker's side is asyncio
(`read_message`, `write_message`). Payloads are written from memoryviews with writev and read
straight into their destination, so bulk data is never copied to build a message.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import threading
from typing import Any

_PREFIX = struct.Struct("<II")
# Headers are a few hundred bytes; a bigger one means the stream is out of step.
MAX_HEADER_BYTES = 1024 * 1024
SMALL_PAYLOAD_BYTES = 64 * 1024

Buffer = bytes | bytearray | memoryview


class PipeClosed(Exception):
    """The other side of the pipe is gone."""


def pack(header: dict[str, Any], payload_len: int = 0) -> bytes:
    """The prefix and header of a message whose payload (written next) has `payload_len` bytes."""
    text = json.dumps(header, separators=(",", ":")).encode()
    return _PREFIX.pack(len(text), payload_len) + text


class PipeIn:
    """The blocking reading end: a header, then its payload read into a caller's buffer."""

    def __init__(self, fd: int) -> None:
        self._file = os.fdopen(fd, "rb", buffering=0)

    def read(self) -> tuple[dict[str, Any], int]:
        """The next header and the length of its payload, which the caller must then consume
        with `read_into` or `read_payload`."""
        prefix = self.read_payload(_PREFIX.size)
        header_len, payload_len = _PREFIX.unpack(prefix)
        if header_len > MAX_HEADER_BYTES:
            raise PipeClosed(f"a header of {header_len} bytes: the stream is out of step")
        return json.loads(self.read_payload(header_len)), payload_len

    def read_payload(self, size: int) -> bytearray:
        buffer = bytearray(size)
        self.read_into(memoryview(buffer))
        return buffer

    def close(self) -> None:
        self._file.close()

    def read_into(self, view: memoryview) -> None:
        while view.nbytes:
            count = self._file.readinto(view)
            if not count:
                raise PipeClosed("the worker closed the pipe")
            view = view[count:]


class PipeOut:
    """The blocking writing end."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        # A job's own threads may report progress while the job's thread sends its result.
        self._lock = threading.Lock()

    def send(self, header: dict[str, Any], payload: list[memoryview] | None = None) -> None:
        parts = [memoryview(pack(header, sum(p.nbytes for p in payload or ())))]
        parts.extend(payload or ())
        with self._lock:
            while parts:
                try:
                    written = os.writev(self._fd, parts)
                except BrokenPipeError:
                    raise PipeClosed("the worker closed the pipe") from None
                parts = _advance(parts, written)


def _advance(parts: list[memoryview], written: int) -> list[memoryview]:
    while parts and written >= parts[0].nbytes:
        written -= parts[0].nbytes
        parts = parts[1:]
    if parts and written:
        parts[0] = parts[0][written:]
    return parts


async def read_message(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    """The next message from an executor; PipeClosed when it is gone."""
    try:
        header_len, payload_len = _PREFIX.unpack(await reader.readexactly(_PREFIX.size))
        if header_len > MAX_HEADER_BYTES:
            raise PipeClosed(f"a header of {header_len} bytes: the stream is out of step")
        if payload_len <= SMALL_PAYLOAD_BYTES:  # one read: small messages are the latency path
            body = await reader.readexactly(header_len + payload_len)
            header, payload = json.loads(body[:header_len]), body[header_len:]
        else:  # two: slicing a big payload off would copy it
            header = json.loads(await reader.readexactly(header_len))
            payload = await reader.readexactly(payload_len)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise PipeClosed("the executor closed the pipe") from exc
    return header, payload


async def write_message(
    writer: asyncio.StreamWriter, header: dict[str, Any], payload: Buffer = b""
) -> None:
    """Send one message to an executor; waits while the pipe is full (backpressure)."""
    try:
        writer.write(pack(header, len(payload)))
        if payload:
            writer.write(payload)
        await writer.drain()
    except (ConnectionError, RuntimeError) as exc:
        raise PipeClosed("the executor closed the pipe") from exc
