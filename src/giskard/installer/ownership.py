"""Whether root may run a Python environment's code.

Root runs the system service's interpreter to read its version and to `pip install` into
it, and Python runs code from the environment at every start (its .pth files,
sitecustomize): whoever may write the environment would run code as root. So it must be
root's alone: owned by root and writable by neither group nor others, up to `/`.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path


def environment_prefixes(interpreter: str) -> list[Path]:
    """The directories that hold what `interpreter` runs: its environment (the directory
    above its bin/, a venv's), that directory's real path, and the installation the
    interpreter resolves to (a venv's base Python). Read from paths alone: nothing runs."""
    environment = Path(interpreter).parent.parent
    base = Path(os.path.realpath(interpreter)).parent.parent
    return list(dict.fromkeys([environment, Path(os.path.realpath(environment)), base]))


def environment_problem(interpreter: str) -> str | None:
    """What lets someone other than root change the code `interpreter` runs; None when
    nothing does."""
    for path, sticky_allowed in _trusted_paths(interpreter):
        problem = _not_roots_alone(path, sticky_allowed=sticky_allowed)
        if problem:
            return problem
    return None


def _trusted_paths(interpreter: str) -> Iterator[tuple[Path, bool]]:
    """Each path that must be root's alone, and whether a sticky directory (/tmp) will do:
    it will for an ancestor, where others may add entries but not replace ours."""
    yield Path(os.path.realpath(interpreter)), False
    for prefix in environment_prefixes(interpreter):
        for ancestor in reversed(prefix.parents):
            yield ancestor, True
        yield prefix, False
        yield prefix / "bin", False
        for site_packages in sorted(prefix.glob("lib*/python*/site-packages")):
            yield site_packages, False
            # Its .pth files, and the packages as installed (not each file within: a
            # tree given to another user shows at its top).
            for entry in sorted(site_packages.iterdir()):
                yield entry, False


def _not_roots_alone(path: Path, *, sticky_allowed: bool) -> str | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if info.st_uid != 0:
        return f"{path} belongs to {_user_name(info.st_uid)}, not root"
    sticky = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
    if info.st_mode & 0o022 and not (sticky_allowed and sticky):
        return f"{path} is writable by {'its group' if info.st_mode & 0o020 else 'others'}"
    return None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
