"""The safe data format's envelope, and an encoder for plain values that needs no numpy.

`giskard.codec` documents the format and handles every value; this module holds the layout
constants it shares with it and encodes trees of None, bool, int, str, float, lists and dicts,
for processes that must stay light (the worker answering an info job imports no pandas).
"""

from __future__ import annotations

import json
import math
import struct

MAGIC = b"GKDATA1\0"
VERSION = 1
ALIGN = 64
MAX_DEPTH = 32
PREFIX = struct.Struct("<8sI")
INT64 = range(-(2**63), 2**63)


def envelope(root: object, body_size: int, table: list[list[int]]) -> bytes:
    """Magic, header length, JSON header and the padding up to where the body starts."""
    header = {"v": VERSION, "size": body_size, "buffers": table, "root": root}
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if len(text) >= 2**32:
        raise ValueError("value is too large to be sent as data (header over 4 GiB)")
    padding = bytes(-(PREFIX.size + len(text)) % ALIGN)
    return PREFIX.pack(MAGIC, len(text)) + text + padding


def encode_plain(value: object) -> bytes:
    """The encoding of a tree of plain values, byte for byte what `codec.encode` makes."""
    return envelope(_node(value, 0), 0, [])


def _node(value: object, depth: int) -> object:
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        if value not in INT64:
            raise ValueError(f"int {value} is outside the int64 range")
        return value
    if kind is float:
        return value if math.isfinite(value) else {"k": "float", "v": repr(value)}
    if depth >= MAX_DEPTH:
        raise ValueError(f"value nests deeper than {MAX_DEPTH} levels")
    if kind is list or kind is tuple:
        return {"k": "list", "v": [_node(item, depth + 1) for item in value]}
    if kind is dict and all(type(key) is str for key in value):
        return {"k": "dict", "v": {key: _node(item, depth + 1) for key, item in value.items()}}
    raise ValueError(f"a {kind.__qualname__} is not a plain value")
