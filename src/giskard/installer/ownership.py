"""Whether root may run a Python environment's code.

Root runs the system service's interpreter to read its version and to `pip install` into
it, and Python runs code from the environment at every start (its .pth files,
sitecustomize): whoever may write the environment would run code as root. So it must be
root's alone: owned by root and writable by neither group nor others, up to `/`.

What the paths alone show is checked first; then the interpreter, run as nobody, says where
it imports from (its .pth files may add any directory, an editable install maps packages
to a source tree), and each of those places must be root's alone too.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from giskard.errors import InstallerError
from giskard.installer.commands import run_tool

# sys.path once site ran (the .pth files' directories), and the source trees setuptools'
# editable finders map packages to (their module's MAPPING and NAMESPACES).
_IMPORT_ROOTS_CODE = """
import json, sys
roots = list(sys.path)
for finder in sys.meta_path:
    module = sys.modules.get(getattr(finder, "__module__", ""))
    roots += getattr(module, "MAPPING", {}).values()
    roots += [p for paths in getattr(module, "NAMESPACES", {}).values() for p in paths]
print(json.dumps({"prefix": sys.prefix, "roots": roots}))
"""
_UNPRIVILEGED_USER = "nobody"


def environment_prefixes(interpreter: str) -> list[Path]:
    """The directories that hold what `interpreter` runs: its environment (the directory
    above its bin/, a venv's), that directory's real path, and the installation the
    interpreter resolves to (a venv's base Python). Read from paths alone: nothing runs."""
    environment = Path(interpreter).parent.parent
    base = Path(os.path.realpath(interpreter)).parent.parent
    return list(dict.fromkeys([environment, Path(os.path.realpath(environment)), base]))


def environment_problem(interpreter: str) -> str | None:
    """What lets someone other than root change the code `interpreter` runs; None when
    nothing does. Root runs nothing of the environment to tell."""
    problem = _first_problem(_trusted_paths(interpreter))
    if problem:
        return problem
    try:
        roots = import_roots(interpreter)
    except InstallerError as exc:
        return str(exc)
    return _first_problem(_import_root_paths(roots))


def import_roots(interpreter: str) -> list[Path]:
    """Where `interpreter` imports from, as it says when run as nobody (never as root: the
    places are not checked yet). InstallerError when it does not say, or says it for
    another environment: a venv nobody cannot read runs as its base Python."""
    argv = [*_as_unprivileged_user(), interpreter, "-I", "-c", _IMPORT_ROOTS_CODE]
    result = run_tool(argv, timeout_s=60, cwd="/")
    try:
        said = json.loads(result.stdout) if result.ok else None
        prefix, roots = said["prefix"], said["roots"]
    except (ValueError, TypeError, KeyError):
        error = result.first_error_line() or "no answer"
        raise InstallerError(
            f"{_as_nobody(interpreter)} did not say where it imports from: {error}"
        ) from None
    venv = Path(interpreter).parent.parent
    if (venv / "pyvenv.cfg").exists() and os.path.realpath(prefix) != os.path.realpath(venv):
        raise InstallerError(
            f"{_as_nobody(interpreter)} ran {prefix}, not {venv}: it must be readable by all"
        )
    return [Path(root) for root in roots if isinstance(root, str) and os.path.isabs(root)]


def _as_nobody(interpreter: str) -> str:
    return f"{interpreter}, run as {_UNPRIVILEGED_USER},"


def _as_unprivileged_user() -> list[str]:
    """The command prefix that drops root to nobody (nothing when not root)."""
    if os.geteuid() != 0:
        return []
    nobody = pwd.getpwnam(_UNPRIVILEGED_USER)
    return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]


def _first_problem(paths: Iterable[tuple[Path, bool]]) -> str | None:
    for path, sticky_allowed in paths:
        problem = _not_roots_alone(path, sticky_allowed=sticky_allowed)
        if problem:
            return problem
    return None


def _import_root_paths(roots: list[Path]) -> Iterator[tuple[Path, bool]]:
    """Each import root (a directory or a zip file), its ancestors, and what a directory
    holds at its top (the packages as installed)."""
    for root in dict.fromkeys(roots):
        if not root.exists():
            continue
        yield from _with_ancestors(root)
        yield from ((entry, False) for entry in _entries(root))


def _trusted_paths(interpreter: str) -> Iterator[tuple[Path, bool]]:
    """Each path that must be root's alone, and whether a sticky directory (/tmp) will do:
    it will for an ancestor, where others may add entries but not replace ours."""
    for hop in _symlink_hops(Path(os.path.abspath(interpreter))):
        yield from _with_ancestors(hop.parent)
    yield Path(os.path.realpath(interpreter)), False
    for prefix in environment_prefixes(interpreter):
        yield from _with_ancestors(prefix)
        # pyvenv.cfg (its home= picks the stdlib), pip.conf (pip's index), bin/, lib/...
        yield from ((entry, False) for entry in _entries(prefix))
        for site_dir in _site_dirs(prefix):
            for between in reversed(site_dir.relative_to(prefix).parents):
                yield prefix / between, False
            yield site_dir, False
            # Its .pth files, and the packages as installed (not each file within: a
            # tree given to another user shows at its top).
            yield from ((entry, False) for entry in _entries(site_dir))


def _symlink_hops(path: Path) -> Iterator[Path]:
    """`path`, and each link it leads through to the file it names: whoever may replace
    one of them picks the interpreter."""
    seen: set[Path] = set()
    while path not in seen:
        seen.add(path)
        yield path
        if not path.is_symlink():
            return
        path = Path(os.path.normpath(path.parent / os.readlink(path)))


def _with_ancestors(path: Path) -> Iterator[tuple[Path, bool]]:
    for ancestor in reversed(path.parents):
        yield ancestor, True
    yield path, False


def _site_dirs(prefix: Path) -> list[Path]:
    """Where pip installs under `prefix`: site-packages, and Debian's dist-packages."""
    patterns = ("lib*/python*/site-packages", "lib*/python*/dist-packages")
    return sorted({path for pattern in patterns for path in prefix.glob(pattern)})


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.is_dir() else []


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
