"""Compression of the artifact chunks a hub sends a worker over a real network link.

On a link of 1 Gbit/s (125 MB/s), a realistic dataset (repeated values, small integers
stored as float64) shrinks ~10x under zstd at its fastest levels, which compress at ~800
MB/s on one core: the transfer then costs a fraction of the link's limit. On loopback and
Unix sockets, the bytes move faster than any compressor runs, so the hub does not compress
there (`Hub(compression="auto")`). Incompressible data (random floats, already compressed
files) costs the compressor little, since zstd gives up on it quickly, and a chunk that
does not shrink is sent as it is; after one, the next few are sent without trying.

Only the hub compresses and only the worker decompresses: a worker says which codecs it
decodes in its hello, the hub says in its welcome which one it uses for that session, and
every chunk says whether it is compressed. The worker trusts its hub's chunks (it runs the
code the hub sends), but still bounds what one chunk may decompress to.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

logger = logging.getLogger(__name__)

ZSTD = "zstd"
# The hub's setting: compress for workers not on loopback or a Unix socket, always, never.
AUTO, ON, OFF = "auto", "on", "off"
SETTINGS = (AUTO, ON, OFF)
# zstd's negative levels trade ratio for speed: -1 keeps most of the ratio of level 1 on
# tabular data at ~1.5x its speed, and gives up on random bytes at over 1 GB/s.
LEVEL = -1
# A chunk must shrink at least this much to be sent compressed.
MIN_SAVING = 0.1
# After a chunk that did not shrink, this many go raw before trying again.
SKIP_AFTER_MISS = 15


def _zstandard() -> Any | None:
    """The zstandard module, or None where it is not installed (then nothing is compressed)."""
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


def codecs_decoded() -> list[str]:
    """What this process can decompress, for its hello."""
    return [ZSTD] if _zstandard() is not None else []


def is_local_peer(peer: str) -> bool:
    """Whether a gRPC peer string ("ipv4:127.0.0.1:5000", "ipv6:%5B::1%5D:5000" (gRPC
    percent-encodes the brackets), "unix:...") names this machine, where compressing costs
    more time than it saves."""
    if peer.startswith(("unix:", "unix-abstract:")):
        return True
    host = unquote(peer).split(":", 1)[-1].rsplit(":", 1)[0].strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def session_codec(setting: str, peer: str, decoded: list[str]) -> str:
    """The codec the hub compresses a worker's chunks with ("" for none): `setting` is the
    hub's, `decoded` what the worker's hello says it decodes."""
    if setting == OFF or ZSTD not in decoded or _zstandard() is None:
        return ""
    if setting == AUTO and is_local_peer(peer):
        return ""
    return ZSTD


@dataclass
class ChunkCompressor:
    """Compresses one artifact's chunks in order, giving up for a while on those that do not
    shrink. Its `compress` releases the GIL (zstd does), so it may run in a thread."""

    codec: str
    _skip: int = 0
    _compressor: Any = field(default=None, repr=False)
    sent_bytes: int = 0
    raw_bytes: int = 0

    def __post_init__(self) -> None:
        if self.codec == ZSTD:
            zstandard = _zstandard()
            assert zstandard is not None, "session_codec chose zstd without zstandard"
            self._compressor = zstandard.ZstdCompressor(level=LEVEL)

    def compress(self, data: bytes | memoryview) -> tuple[bytes | memoryview, str]:
        """The bytes to send for `data` and the codec they are in ("" for raw)."""
        self.raw_bytes += len(data)
        if self._compressor is None or self._skip:
            self._skip = max(0, self._skip - 1)
            self.sent_bytes += len(data)
            return data, ""
        packed = self._compressor.compress(data)
        if len(packed) > len(data) * (1 - MIN_SAVING):
            self._skip = SKIP_AFTER_MISS
            self.sent_bytes += len(data)
            return data, ""
        self.sent_bytes += len(packed)
        return packed, self.codec


class ChunkDecompressor:
    """The worker's side: the bytes of a chunk, decompressed if it says it is compressed."""

    def __init__(self, max_chunk_bytes: int) -> None:
        self._max = max_chunk_bytes
        self._decompressor: Any = None
        self._zstd: Any = None

    def data(self, payload: bytes, codec: str) -> bytes:
        if not codec:
            return payload
        if codec != ZSTD:
            raise ValueError(f"a chunk compressed with {codec!r}, which this worker never offered")
        if self._decompressor is None:
            zstandard = _zstandard()
            if zstandard is None:
                raise ValueError("a zstd chunk, but zstandard is not installed here")
            self._zstd = zstandard
            self._decompressor = zstandard.ZstdDecompressor()
        try:
            # A frame says its size; one that says more than a chunk holds is refused before
            # anything is allocated for it.
            if not 0 <= self._zstd.frame_content_size(payload) <= self._max:
                raise ValueError(f"a compressed chunk of more than {self._max} bytes")
            return self._decompressor.decompress(payload)
        except ValueError:
            raise
        except Exception as exc:  # zstandard.ZstdError: a corrupt frame
            raise ValueError(f"a compressed chunk that does not decompress: {exc}") from None
