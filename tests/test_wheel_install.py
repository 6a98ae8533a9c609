"""The wheel a user installs, not the checkout: built from this tree, installed with its `hub`
extra into a fresh venv of the system's Python, then a hub, a worker and a client, all run
from that venv, predict with a real scikit-learn model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import CONNECTED, WorkerProcess, free_port, wait_until

from giskard import __version__
from giskard.protocol import PROTOCOL_VERSION

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = Path("/usr/bin/python3")
# The client, run by the venv's Python from a directory outside the checkout.
PREDICT = """
import json, sys
import numpy as np
import giskard
from giskard.client import HubClient
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

features, target = load_iris(return_X_y=True, as_frame=True)
model = RandomForestClassifier(n_estimators=20, random_state=0).fit(features, target)
with HubClient(sys.argv[1]) as client:
    remote = client.predict(model, features, method="predict_proba", wait_for_worker_s=60)
print(json.dumps({
    "rows": len(remote),
    "equal": bool(np.array_equal(remote, model.predict_proba(features))),
    "giskard": giskard.__file__,
}))
"""

pytestmark = [
    pytest.mark.skipif(
        not SYSTEM_PYTHON.exists(),
        reason=f"{SYSTEM_PYTHON} is missing: no Python to make a venv of",
    ),
    # The first test builds the wheel and installs it with its dependencies.
    pytest.mark.timeout(1200),
]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv of the system's Python holding the wheel built from this checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp), str(ROOT)], tmp, 300)
    (wheel,) = tmp.glob("giskard_worker-*.whl")
    venv = tmp / "venv"
    _run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], tmp, 120)
    # pip's cache makes a second run fast; --no-deps would hide a missing dependency.
    install = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*install, f"{wheel}[hub]", "scikit-learn"], tmp, 900)
    return venv


def test_the_installed_wheel_reports_its_versions(venv: Path) -> None:
    version = _giskard(venv, "--version")
    assert version.splitlines()[:2] == [
        f"giskard-worker {__version__}",
        f"protocol {PROTOCOL_VERSION}",
    ]
    assert str(venv) in version.splitlines()[2], "the venv's Python runs it"
    assert "worker" in _giskard(venv, "--help") and "hub" in _giskard(venv, "--help")


def test_the_installed_wheel_predicts_through_its_own_hub_and_worker(
    venv: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = _venv_env(venv, home)
    port, console_port = free_port(), free_port()
    hub_args = ["hub", "start", "-p", str(port), "--console-port", str(console_port)]
    with _started(venv, hub_args, env, tmp_path) as hub:
        hub.wait_for_output("Hub listening on", timeout_s=60)
        # The console came with the `hub` extra.
        wait_until(lambda: _healthy(console_port), 30, "the console's /healthz")
        worker_args = ["worker", "start", "-h", "127.0.0.1", "-p", str(port)]
        with _started(venv, worker_args, env, tmp_path) as worker:
            worker.wait_for_output(CONNECTED, timeout_s=60)
            script = tmp_path / "predict.py"
            script.write_text(PREDICT)
            command = [str(venv / "bin" / "python"), str(script), f"127.0.0.1:{port}"]
            result = json.loads(_run(command, tmp_path, 180, env).splitlines()[-1])
            assert worker.stop() == 0, worker.output
        assert hub.stop() == 0, hub.output
    assert result["equal"] and result["rows"] == 150
    assert result["giskard"].startswith(str(venv)), "the wheel's giskard, not the checkout's"


def _run(command: list[str], cwd: Path, timeout_s: float, env: dict | None = None) -> str:
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env or _clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr}"
    return result.stdout


def _giskard(venv: Path, *args: str) -> str:
    return _run([str(venv / "bin" / "giskard"), *args], venv.parent, 60, _clean_env())


def _clean_env() -> dict[str, str]:
    """This environment without what would let the checkout's code in."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }


def _venv_env(venv: Path, home: Path) -> dict[str, str]:
    """For the hub, the worker and the client: their own home, one GISKARD_HOME (so the hub's
    local admin key), the venv first on PATH."""
    path = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**_clean_env(), "HOME": str(home), "GISKARD_HOME": str(home / "gh"), "PATH": path}


@contextmanager
def _started(
    venv: Path, args: list[str], env: dict[str, str], cwd: Path
) -> Iterator[WorkerProcess]:
    """`giskard ARGS` from the venv, its stderr in a file; stopped (SIGTERM) on the way out."""
    stderr_path = cwd / f"{args[0]}.stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [str(venv / "bin" / "giskard"), *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    started = WorkerProcess(process, stderr_path, Path(env["GISKARD_HOME"]))
    try:
        yield started
    finally:
        try:
            started.stop(timeout_s=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False
