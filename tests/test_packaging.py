"""packaging/: the sdist and wheel `make dist` builds, the check that guards their contents, and
the container recipes. No container engine runs here (and no base image could be pulled), so
the recipes are not built: they are linted, and the worker's entrypoint runs in this venv."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import CONNECTED, WorkerProcess, free_port, giskard_command
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from giskard.address import DEFAULT_PORT
from giskard.client import HubClient
from giskard.errors import ExitCode
from giskard.hub import Hub
from giskard.hub.console import DEFAULT_CONSOLE_PORT

ROOT = Path(__file__).resolve().parent.parent
CHECK_DIST = ROOT / "packaging" / "check_dist.py"
CONTAINER = ROOT / "packaging" / "container"
WORKER_IMAGE, HUB_IMAGE = CONTAINER / "Containerfile", CONTAINER / "Containerfile.hub"
# Where the worker image expects its key: a secret mounted as a file, never ENV or argv.
KEY_MOUNT = "/run/secrets/giskard/api-key"


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


@pytest.mark.timeout(600)
@pytest.mark.parametrize("recipe", [WORKER_IMAGE, HUB_IMAGE], ids=lambda path: path.name)
def test_container_recipe_lint_without_building_it(recipe: Path, dist: Path) -> None:
    instructions = _instructions(recipe)
    assert instructions[:2] == [("ARG", "BASE=python:3.11-slim"), ("FROM", "${BASE}")]
    for name, value in instructions:
        if name == "COPY":
            *sources, _ = value.split()
            for source in sources:
                assert list(dist.glob(source)), f"COPY {source}: not in the build context"
    users = [value for name, value in instructions if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "it must run unprivileged"
    for name, value in instructions:
        if name in ("ENV", "ARG"):
            assert not re.search(r"KEY|SECRET|TOKEN|PASSWORD", value, re.IGNORECASE), value
    # Exec form, so that the runtime's SIGTERM reaches giskard, not a shell.
    entrypoint = json.loads(dict(instructions)["ENTRYPOINT"])
    json.loads(dict(instructions)["CMD"])
    assert entrypoint[0] == "giskard"


def test_worker_image_reads_its_key_from_a_mounted_file() -> None:
    entrypoint = _entrypoint(WORKER_IMAGE)
    assert entrypoint[:3] == ["giskard", "worker", "start"]
    assert entrypoint[entrypoint.index("--api-key-file") + 1] == KEY_MOUNT


def test_hub_image_exposes_the_workers_port_and_the_consoles() -> None:
    instructions = _instructions(HUB_IMAGE)
    assert dict(instructions)["EXPOSE"].split() == [str(DEFAULT_PORT), str(DEFAULT_CONSOLE_PORT)]
    entrypoint = _entrypoint(HUB_IMAGE)
    assert entrypoint[entrypoint.index("--console-port") + 1] == str(DEFAULT_CONSOLE_PORT)


def test_worker_image_entrypoint_in_a_plain_venv_predicts_with_the_key_from_a_file(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    _, key = client.create_key("worker", "container")
    secret = _mounted_secret(tmp_path, key + "\n")
    # As `podman run IMAGE -h HOST -p PORT`: the image's entrypoint, the user's arguments.
    worker = start_worker(
        argv=[*_venv_entrypoint(secret), "-h", "127.0.0.1", "-p", str(hub.port)], api_key=""
    )
    worker.wait_for_output(CONNECTED, timeout_s=30)
    data = load_wine(as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(data.data, data.target)
    predictions = client.predict(model, data.data, wait_for_worker_s=30)
    assert np.array_equal(predictions, model.predict(data.data))
    assert worker.stop() == 0


def test_hub_image_entrypoint_in_a_plain_venv_serves_the_worker_image_over_tls(
    start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """The containers' documented flow, without containers: the hub image's exact command
    (its own certificate), a worker key made by `giskard hub keys create` beside it, and the
    worker image's entrypoint verifying the hub against the certificate copied from it."""
    hub_home, port, console_port = tmp_path / "hub-home", free_port(), free_port()
    # Free ports, not the image's own, which other hubs here may hold (the last one given wins).
    ports = ["-p", str(port), "--console-port", str(console_port)]
    hub = start_worker(argv=[*_venv_command(HUB_IMAGE), *ports], home=hub_home, api_key="")
    hub.wait_for_output("Hub listening on", timeout_s=30)
    key = subprocess.run(
        giskard_command(
            "hub", "keys", "create", "--role", "worker", "--name", "pool", "-p", str(port)
        ),
        env={**os.environ, "GISKARD_HOME": str(hub_home), "GISKARD_API_KEY": ""},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    secret = _mounted_secret(tmp_path, key)
    certificate = hub_home / "hub" / "tls" / "hub.crt"
    address = ["-h", "127.0.0.1", "-p", str(port), "--ca-file", str(certificate)]
    worker = start_worker(argv=[*_venv_entrypoint(secret), *address], api_key="")
    worker.wait_for_output(CONNECTED, timeout_s=30)
    assert worker.stop() == 0 and hub.stop() == 0


def test_worker_image_without_its_secret_says_so_and_exits_78(
    start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    missing = tmp_path / "secrets" / "api-key"
    worker = start_worker(argv=[*_venv_entrypoint(missing), "-h", "127.0.0.1"], api_key="")
    assert worker.process.wait(30) == ExitCode.CONFIG
    assert f"cannot read the API key file {missing}" in worker.output
    assert "Traceback" not in worker.output


def _mounted_secret(tmp_path: Path, key: str) -> Path:
    """The key in a read-only file, as a secret mount gives it to the container."""
    secret = tmp_path / "secrets" / "api-key"
    secret.parent.mkdir()
    secret.write_text(key)
    secret.chmod(0o400)
    return secret


def _venv_entrypoint(secret: Path) -> list[str]:
    """The worker image's entrypoint as this venv runs it, the secret mounted at `secret`."""
    entrypoint = _entrypoint(WORKER_IMAGE)
    assert entrypoint[0] == "giskard"
    command = giskard_command(*entrypoint[1:])
    return [str(secret) if arg == KEY_MOUNT else arg for arg in command]


def _venv_command(recipe: Path) -> list[str]:
    """The recipe's ENTRYPOINT and CMD, as `podman run IMAGE` runs them, run by this venv."""
    instructions = dict(_instructions(recipe))
    command = json.loads(instructions["ENTRYPOINT"]) + json.loads(instructions["CMD"])
    assert command[0] == "giskard"
    return giskard_command(*command[1:])


def _entrypoint(recipe: Path) -> list[str]:
    return json.loads(dict(_instructions(recipe))["ENTRYPOINT"])


def _instructions(recipe: Path) -> list[tuple[str, str]]:
    """The recipe's instructions, (NAME, arguments), continuation lines joined."""
    text = "\n".join(
        line for line in recipe.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    logical = re.sub(r"\\\n", " ", text).splitlines()
    return [
        (name.upper(), rest.strip())
        for name, _, rest in (line.strip().partition(" ") for line in logical)
        if name
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
