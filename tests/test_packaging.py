"""packaging/: the sdist and wheel `make dist` builds, and the check that guards their contents."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK_DIST = ROOT / "packaging" / "check_dist.py"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, and the wheel built from it, as `make dist` builds them."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], timeout_s=300)
    return out


@pytest.mark.timeout(600)
def test_dist_passes_twine_and_holds_what_an_install_needs(dist: Path) -> None:
    artifacts = sorted(str(path) for path in dist.iterdir())
    _run([sys.executable, "-m", "twine", "check", "--strict", *artifacts], timeout_s=60)
    assert "hold what they should" in _run([sys.executable, str(CHECK_DIST), str(dist)])


@pytest.mark.timeout(600)
def test_check_dist_refuses_a_wheel_with_tests_and_without_py_typed(
    dist: Path, tmp_path: Path
) -> None:
    (wheel,) = dist.glob("*.whl")
    shutil.copy(next(dist.glob("*.tar.gz")), tmp_path)
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(tmp_path / wheel.name, "w") as bad:
        for item in source.infolist():
            if item.filename != "giskard/py.typed":
                bad.writestr(item, source.read(item))
        bad.writestr("tests/test_cli.py", "")
    result = _check(tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{wheel.name}: holds tests (only giskard, {wheel.name.split('-py3')[0]}.dist-info)",
        f"{wheel.name}: lacks giskard/py.typed",
        f"{wheel.name}: no file matches giskard/py.typed",
    ]


@pytest.mark.timeout(600)
def test_check_dist_refuses_an_sdist_with_ci_scripts(dist: Path, tmp_path: Path) -> None:
    import tarfile

    (sdist,) = dist.glob("*.tar.gz")
    shutil.copy(next(dist.glob("*.whl")), tmp_path)
    top = sdist.name.removesuffix(".tar.gz")
    extra = tmp_path / "run"
    extra.write_text("#!/bin/sh\n")
    with tarfile.open(sdist) as source, tarfile.open(tmp_path / sdist.name, "w:gz") as bad:
        for member in source.getmembers():
            bad.addfile(member, source.extractfile(member) if member.isfile() else None)
        bad.add(extra, arcname=f"{top}/.ci/run")
    result = _check(tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{sdist.name}: holds .ci (only .gitignore, LICENSE, PKG-INFO, README.md, proto,"
        " pyproject.toml, src)"
    ]


def _check(dist: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK_DIST), str(dist)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _run(command: list[str], timeout_s: float = 60) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr}"
    return result.stdout
