"""Showing text that came from a worker: a worker's word is not to be trusted."""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` with control characters escaped, so that it can neither forge log lines nor
    drive a terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
