"""Whether an environment can load a pickle: what the pickle needs, and how a worker differs.

A client records, with each pickled model or function, the Python minor version and the
cloudpickle version it was pickled with, and the distributions (name, version) of the modules
the pickle references. A worker can load it when its Python minor is the same and every one of
those distributions is installed; other version differences are allowed but reported.
"""

from __future__ import annotations

import functools
import pickletools
import platform
import re
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

# cloudpickle imports a module a function uses with one of these, its name as argument.
_SUBIMPORTS = frozenset({"subimport", "dynamic_subimport"})
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING"})
_STRINGS |= {"SHORT_BINSTRING", "BINSTRING"}
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_SUBIMPORT = object()  # stands for cloudpickle's subimport on the scan's stack


# What a job's requirements may hold, as the hub takes them: a pickle references tens of
# distributions, whose names (PEP 503) and versions (PEP 440) are short ASCII; these bounds
# keep what crosses to a worker's executors in one pipe header small whatever a client sends.
NAME_MAX_CHARS = 200
VERSION_MAX_CHARS = 128
DISTRIBUTIONS_MAX = 500
_NAME = re.compile(r"[A-Za-z0-9._-]+")


def check_requirements(message: Any) -> None:
    """ValueError, saying why, unless the Requirements `message` stays within the bounds."""
    if len(message.distributions) > DISTRIBUTIONS_MAX:
        raise ValueError(
            f"a job's requirements name {len(message.distributions)} distributions;"
            f" at most {DISTRIBUTIONS_MAX}"
        )
    versions = [message.python, message.cloudpickle, *message.distributions.values()]
    for version in versions:
        if len(version) > VERSION_MAX_CHARS or not (version.isascii() and version.isprintable()):
            raise ValueError(
                f"a version in a job's requirements is not printable ASCII of at most"
                f" {VERSION_MAX_CHARS} characters: {version[:40]!r}"
            )
    for name in message.distributions:
        if len(name) > NAME_MAX_CHARS or not _NAME.fullmatch(name):
            raise ValueError(
                f"a distribution name in a job's requirements is not a name: {name[:40]!r}"
            )


@dataclass(frozen=True)
class Requirements:
    """What loading a pickle needs; `distributions` are (name, version) pairs, sorted."""

    python: str = ""
    cloudpickle: str = ""
    distributions: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.python)

    def to_proto(self) -> Any:
        from giskard.rpc.v1 import common_pb2

        return common_pb2.Requirements(
            python=self.python, cloudpickle=self.cloudpickle, distributions=dict(self.distributions)
        )

    @classmethod
    def from_proto(cls, message: Any) -> Requirements:
        return cls(
            message.python, message.cloudpickle, tuple(sorted(message.distributions.items()))
        )

    def to_plain(self) -> dict[str, Any]:
        """As JSON-able values (between the worker and its executors)."""
        return {
            "python": self.python,
            "cloudpickle": self.cloudpickle,
            "distributions": dict(self.distributions),
        }

    @classmethod
    def from_plain(cls, plain: Mapping[str, Any]) -> Requirements:
        return cls(
            plain["python"], plain["cloudpickle"], tuple(sorted(plain["distributions"].items()))
        )

    def describe(self, shown: Iterable[str] = ()) -> str:
        """E.g. "pickled on Python 3.12 with scikit-learn 1.5.2" (the distributions `shown`)."""
        wanted = {normalise(name) for name in shown}
        dists = [f"{n} {v}" for n, v in self.distributions if normalise(n) in wanted]
        if "cloudpickle" in wanted and "cloudpickle" not in dict(self.distributions):
            dists.append(f"cloudpickle {self.cloudpickle}")
        return f"pickled on Python {self.python}" + (f" with {_and(dists)}" if dists else "")


NOTHING = Requirements()  # what a job without pickles (or from an older client) needs


@dataclass(frozen=True)
class Difference:
    """One way an environment differs from what a pickle needs. `what` is "python",
    "cloudpickle" or a distribution's name; `found` is empty when it is missing."""

    worker: str
    what: str
    required: str
    found: str
    blocking: bool

    def __str__(self) -> str:
        found = f"has {self.found}" if self.found else "lacks it"
        effect = "cannot load" if self.blocking else "may load"
        return f"{self.what} {self.required} required, {self.worker} {found} ({effect})"

    def to_proto(self) -> Any:
        from giskard.rpc.v1 import common_pb2

        return common_pb2.EnvironmentDifference(
            worker=self.worker,
            what=self.what,
            required=self.required,
            found=self.found,
            blocking=self.blocking,
        )

    @classmethod
    def from_proto(cls, message: Any) -> Difference:
        return cls(message.worker, message.what, message.required, message.found, message.blocking)


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them: lowercase, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def python_minor(version: str) -> str:
    """ "3.11.4" -> "3.11"."""
    return ".".join(version.split(".")[:2])


def differences(requirements: Requirements, worker: Any) -> list[Difference]:
    """How `worker` (a WorkerInfo: name, python_version, packages) differs from what a pickle
    needs: the blocking differences first. None for empty requirements, and none for a worker
    that reports no environment (one of another implementation of the protocol): there is
    nothing to compare it with, so it is trusted as workers were before these checks."""
    if not requirements or not worker.python_version:
        return []
    packages = worker.packages
    found = [("python", requirements.python, python_minor(worker.python_version), True)]
    found.append(
        ("cloudpickle", requirements.cloudpickle, _version_in(packages, "cloudpickle"), False)
    )
    for name, version in requirements.distributions:
        there = _version_in(packages, name)
        found.append((name, version, there, not there))
    diffs = [
        Difference(worker.name, what, required, there, blocking)
        for what, required, there, blocking in found
        if there != required
    ]
    return sorted(diffs, key=lambda diff: not diff.blocking)


def _version_in(packages: Mapping[str, str], name: str) -> str:
    """The version of distribution `name` among `packages` (name -> version), "" if absent.
    The name as spelled is the common case and costs one look-up; only a miss compares every
    name in normal form."""
    if name in packages:
        return packages[name]
    wanted = normalise(name)
    return next((v for n, v in packages.items() if normalise(n) == wanted), "")


def blocking(diffs: Iterable[Difference]) -> list[Difference]:
    return [diff for diff in diffs if diff.blocking]


def explain(requirements: Requirements, diffs: Iterable[Difference]) -> str:
    """E.g. "pickled on Python 3.12 with scikit-learn 1.5.2; worker gpu-box has Python 3.10
    and scikit-learn 1.3.0" (one clause per worker, naming what differs)."""
    per_worker: dict[str, list[Difference]] = {}
    for diff in diffs:
        per_worker.setdefault(diff.worker, []).append(diff)
    if not per_worker:
        return requirements.describe()
    named = {d.what for ds in per_worker.values() for d in ds} - {"python"}
    clauses = [requirements.describe(named)]
    for worker, ds in per_worker.items():
        has = [f"{'Python' if d.what == 'python' else d.what} {d.found}" for d in ds if d.found]
        lacks = [d.what for d in ds if not d.found]
        text = f"worker {worker or '?'}"
        text += f" has {_and(has)}" if has else ""
        text += (" but lacks " if has else " lacks ") + _and(lacks) if lacks else ""
        clauses.append(text)
    return "; ".join(clauses)


def this_environment() -> Any:
    """The running interpreter as a WorkerInfo named after its host, for `differences`."""
    from giskard.rpc.v1 import common_pb2
    from giskard.worker.info import installed_packages

    return common_pb2.WorkerInfo(
        name=f"on {socket.gethostname()}",
        python_version=platform.python_version(),
        packages=installed_packages(),
    )


def requirements_of(pickled: bytes | bytearray | memoryview) -> Requirements:
    """What loading `pickled` needs: this interpreter's Python minor and cloudpickle, and the
    distributions of the modules it references (not the standard library, nor modules that
    belong to no distribution)."""
    import cloudpickle

    dists: dict[str, str] = {}
    for module in referenced_modules(pickled):
        top = module.partition(".")[0]
        if top in sys.stdlib_module_names or top == "__main__":
            continue
        for dist in _distributions(tuple(sys.path)).get(top, ()):
            version = _version(dist)
            # cloudpickle's version has a field of its own.
            if version and normalise(dist) != "cloudpickle":
                dists[dist] = version
    return Requirements(
        python_minor(platform.python_version()),
        cloudpickle.__version__,
        tuple(sorted(dists.items())),
    )


def merged(requirements: Iterable[Requirements]) -> Requirements:
    """What loading all of these needs (they come from one interpreter)."""
    present = [r for r in requirements if r]
    if not present:
        return Requirements()
    dists = dict(pair for r in present for pair in r.distributions)
    return Requirements(present[0].python, present[0].cloudpickle, tuple(sorted(dists.items())))


def referenced_modules(pickled: bytes | bytearray | memoryview) -> set[str]:
    """The modules a pickle imports when loaded: those of its GLOBAL and STACK_GLOBAL opcodes
    (for STACK_GLOBAL, the module is the string pushed before the name, which may come from
    the memo), and those cloudpickle imports by name (`subimport("numpy")`)."""
    modules: set[str] = set()
    memo: dict[int, object] = {}
    pushed: list[object] = [None, None]  # the last two values pushed that matter here
    for opcode, arg, _ in pickletools.genops(bytes(pickled)):
        name = opcode.name
        value: object = None
        if name in _STRINGS:
            value = arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
            if pushed[1] is _SUBIMPORT:
                modules.add(str(value))
        elif name in _GETS:
            value = memo.get(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[1]
            continue
        elif name in _PUTS:
            memo[arg] = pushed[1]
            continue
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            module, _, attribute = (
                str(arg).partition(" ") if name == "GLOBAL" else (pushed[0], "", pushed[1])
            )
            if isinstance(module, str) and module:
                modules.add(module)
            subimports = attribute in _SUBIMPORTS and str(module).startswith("cloudpickle")
            value = _SUBIMPORT if subimports else None
        pushed = [pushed[1], value]
    return modules


@functools.lru_cache(maxsize=4)
def _distributions(path: tuple[str, ...]) -> Mapping[str, list[str]]:
    # Slow (it reads every installed distribution's file list): once per sys.path.
    return metadata.packages_distributions()


@functools.lru_cache(maxsize=1024)
def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
