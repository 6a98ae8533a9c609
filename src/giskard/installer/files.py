"""Small file helpers shared by the backends."""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import TextIO

from giskard.errors import InstallerError


def write_atomically(path: Path, text: str | bytes, *, mode: int) -> None:
    """Write via a temporary file and a rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    # Created with its final mode: a secret or a state file is never readable by others.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with open(descriptor, "wb" if isinstance(text, bytes) else "w") as file:
        file.write(text)
    temporary.chmod(mode)  # O_CREAT's mode is filtered by the umask
    os.replace(temporary, path)


def write_secret(path: Path, text: str) -> None:
    """Write a secret readable by its owner alone: 0600 in a 0700 directory."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
        write_atomically(path, text, mode=0o600)
    except OSError as exc:
        raise InstallerError(f"cannot store the API key in {path.parent}: {exc.strerror}") from None


def read_tail(path: Path, lines: int, *, denied: str = "permission denied") -> list[str]:
    """The last `lines` lines of `path`; InstallerError saying `denied` when this user may
    not read it."""
    try:
        with _open_log(path, denied) as file:
            return [line.rstrip("\n") for line in deque(file, maxlen=lines)]
    except FileNotFoundError:
        return [f"({path} does not exist yet)"]


def follow_file(path: Path, lines: int, *, denied: str = "permission denied") -> int:
    """`tail -F`: print the last lines, then what is appended, until Ctrl-C; follows the
    log across rotation (a new file at the same path)."""
    try:
        file = _open_log(path, denied)
    except FileNotFoundError:
        print(f"({path} does not exist yet)", flush=True)
        return 1
    try:
        # The tail and what follows are read from one open file: a line written between
        # printing the tail and following is not lost.
        for line in deque(file, maxlen=lines):
            print(line, end="", flush=True)
        while True:
            line = file.readline()
            if line:
                print(line, end="", flush=True)
            elif _rotated(path, file):
                file.close()
                file = _open_log(path, denied)
            else:
                time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        file.close()


def _open_log(path: Path, denied: str) -> TextIO:
    try:
        return path.open(errors="replace")
    except PermissionError:
        raise InstallerError(f"cannot read {path}: {denied}") from None


def _rotated(path: Path, file: object) -> bool:
    try:
        return path.stat().st_ino != os.fstat(file.fileno()).st_ino  # type: ignore[attr-defined]
    except FileNotFoundError:
        return False
