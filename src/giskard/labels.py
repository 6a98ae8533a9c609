"""Worker names and labels: the rules they follow, shared by the worker's command line, the
hub (which checks what a worker says in its hello) and the client (which asks for them).

A name or a label key is 1-63 characters of [A-Za-z0-9._-], so that it fits a unit file, a
log line and a URL as it is; a label's value is printable, without spaces, 1-255 characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_NAME = re.compile(r"[A-Za-z0-9._-]{1,63}")
MAX_LABEL_VALUE = 255
# What a hello or a job may carry: more labels than this describe no real worker.
MAX_LABELS = 64


def check_name(name: str, what: str = "worker name") -> str:
    """`name` if it is a valid worker name (or label key); ValueError saying why not."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"invalid {what} {name!r}: use 1-63 letters, digits, '.', '_' or '-'")
    return name


def check_label(key: str, value: str) -> tuple[str, str]:
    check_name(key, "label key")
    ok = isinstance(value, str) and 0 < len(value) <= MAX_LABEL_VALUE
    if not ok or not value.isprintable() or any(char.isspace() for char in value):
        raise ValueError(
            f"invalid value {value!r} for the label {key!r}: use 1-{MAX_LABEL_VALUE}"
            " printable characters without spaces"
        )
    return key, value


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """`labels` as a dict if every one is valid; ValueError naming the first that is not."""
    if len(labels) > MAX_LABELS:
        raise ValueError(f"{len(labels)} labels: at most {MAX_LABELS}")
    return dict(check_label(key, value) for key, value in labels.items())


def parse_labels(texts: Iterable[str]) -> dict[str, str]:
    """`KEY=VALUE` texts (the command line's --label) as a dict; ValueError for one without
    `=`, invalid, or given twice."""
    labels: dict[str, str] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep:
            raise ValueError(f"invalid label {text!r}: write it KEY=VALUE")
        if key in labels:
            raise ValueError(f"the label {key!r} is given twice")
        labels[key] = value
    return check_labels(labels)
