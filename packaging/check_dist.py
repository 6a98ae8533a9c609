"""Check that a built sdist and wheel hold what an install needs, and nothing else.

    python packaging/check_dist.py DIST_DIR

DIST_DIR holds one wheel and one sdist (`make dist` builds them). Every problem is one line on
stderr and the exit code is 1; when both are right it prints what it checked and exits 0.
"""

from __future__ import annotations

import fnmatch
import re
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "giskard"
DISTRIBUTION = "giskard_worker"
ENTRY_POINT = "giskard = giskard.cli:main"
# Beside every file of the source package, which must all be there: patterns that must match
# at least one file, so that a check against the wrong source tree cannot pass by being empty.
WHEEL_MUST_MATCH = (
    "giskard/py.typed",
    "giskard/cli/__init__.py",
    "giskard/rpc/v1/*_pb2.py",
    "giskard/rpc/v1/*_pb2_grpc.py",
    "giskard/rpc/v1/*_pb2.pyi",
    "giskard/service_templates/*.j2",
    "giskard/hub/console/templates/*.j2",
)
# What builds the wheel and what describes it (hatch adds PKG-INFO and .gitignore itself).
SDIST_TOP_LEVEL = {
    "src",
    "proto",
    "README.md",
    "LICENSE",
    "pyproject.toml",
    "PKG-INFO",
    ".gitignore",
}


def source_version(root: Path = ROOT) -> str:
    """The version the checkout declares, read where hatch reads it."""
    text = (root / "src" / PACKAGE / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no __version__ in {root / 'src' / PACKAGE / '__init__.py'}")
    return match.group(1)


def source_files(root: Path = ROOT) -> set[str]:
    """The package's files in the checkout, as paths inside the wheel (giskard/...)."""
    base = root / "src"
    return {
        path.relative_to(base).as_posix()
        for path in (base / PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def wheel_problems(wheel: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the wheel: files missing, files that do not belong, bad metadata."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"{DISTRIBUTION}-{source_version(root)}.dist-info"
        problems = _misplaced(names, allowed={PACKAGE, dist_info}, where=wheel.name)
        problems += _missing(source_files(root) - names, wheel.name)
        problems += _unmatched(names, WHEEL_MUST_MATCH, wheel.name)
        problems += _missing({f"{dist_info}/licenses/LICENSE"} - names, wheel.name)
        if f"{dist_info}/entry_points.txt" in names:
            entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
            if ENTRY_POINT not in entry_points:
                problems.append(f"{wheel.name}: no console script `{ENTRY_POINT}`")
        else:
            problems.append(f"{wheel.name}: no {dist_info}/entry_points.txt")
    return problems


def sdist_problems(sdist: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the sdist: it must build the wheel and describe it, and no more."""
    top = f"{DISTRIBUTION}-{source_version(root)}"
    with tarfile.open(sdist) as archive:
        members = {member.name for member in archive.getmembers() if member.isfile()}
    if not all(name.startswith(f"{top}/") for name in members):
        return [f"{sdist.name}: not everything is under {top}/"]
    inside = {name.removeprefix(f"{top}/") for name in members}
    problems = _misplaced(inside, allowed=SDIST_TOP_LEVEL, where=sdist.name)
    problems += _missing({f"src/{name}" for name in source_files(root)} - inside, sdist.name)
    protos = {path.relative_to(root).as_posix() for path in (root / "proto").rglob("*.proto")}
    problems += _missing(protos - inside, sdist.name)
    problems += _missing({"README.md", "LICENSE", "pyproject.toml"} - inside, sdist.name)
    return problems


def _misplaced(names: set[str], allowed: set[str], where: str) -> list[str]:
    tops = {name.split("/", 1)[0] for name in names}
    return [f"{where}: holds {top} (only {', '.join(sorted(allowed))})" for top in tops - allowed]


def _missing(names: set[str], where: str) -> list[str]:
    return [f"{where}: lacks {name}" for name in sorted(names)]


def _unmatched(names: set[str], patterns: tuple[str, ...], where: str) -> list[str]:
    return [
        f"{where}: no file matches {pattern}"
        for pattern in patterns
        if not fnmatch.filter(names, pattern)
    ]


def _one(dist: Path, pattern: str) -> tuple[Path | None, list[str]]:
    found = sorted(dist.glob(pattern))
    if len(found) == 1:
        return found[0], []
    return None, [f"{dist}: {len(found)} files match {pattern}, expected one"]


def dist_problems(dist: Path) -> list[str]:
    """What is wrong with the one wheel and the one sdist in `dist`."""
    wheel, problems = _one(dist, "*.whl")
    sdist, sdist_found = _one(dist, "*.tar.gz")
    problems += sdist_found
    problems += wheel_problems(wheel) if wheel else []
    problems += sdist_problems(sdist) if sdist else []
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python packaging/check_dist.py DIST_DIR", file=sys.stderr)
        return 2
    problems = dist_problems(Path(argv[0]))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{argv[0]}: the wheel and the sdist hold what they should")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
