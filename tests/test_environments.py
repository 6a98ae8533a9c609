"""Two Python environments on one hub: a job goes only to a worker that can load it, fails at
once when none can, and a pickle that still fails to load says how the environments differ.
Real hub, real workers in two virtual environments built here from /usr/bin/python3 (cached
between runs): one has a package (the "probe") that the other lacks."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from conftest import CONNECTED, WorkerProcess, wait_until

from giskard import compat
from giskard.client import HubClient
from giskard.compat import Difference
from giskard.errors import EndReason, IncompatibleEnvironmentError
from giskard.hub import Hub

PROBE = "giskard_compat_probe"
PROBE_DIST = "giskard-compat-probe"
PROBE_SOURCE = '''"""A package only one test environment has."""
import os

import numpy as np


class ProbeModel:
    def predict(self, rows):
        """The pid of the worker whose executor runs this, once per row."""
        return np.full(len(rows), os.getppid())
'''
PROBE_VERSION = "1.0"  # in the probe's environment
PROBE_METADATA = f"Metadata-Version: 2.1\nName: {PROBE_DIST}\nVersion: {{version}}\n"
LOOSE = "giskard_loose_probe"  # a module that belongs to no distribution

# The jobs below are this module's functions: the workers cannot import it.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def write_probe(site: Path, version: str = PROBE_VERSION) -> None:
    """The probe package and its .dist-info (as pip would install it) in `site`."""
    (site / PROBE).mkdir(parents=True)
    (site / PROBE / "__init__.py").write_text(PROBE_SOURCE)
    dist_info = site / f"giskard_compat_probe-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(PROBE_METADATA.format(version=version))
    (dist_info / "top_level.txt").write_text(PROBE + "\n")
    (dist_info / "RECORD").write_text(f"{PROBE}/__init__.py,,\n")


def base_python() -> str:
    """/usr/bin/python3 if it is this Python's minor (the new environment reuses our packages,
    compiled for it), else this Python."""
    system = Path("/usr/bin/python3")
    if system.exists():
        minor = subprocess.run(
            [str(system), "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        if minor == str(sys.version_info[:2]):
            return str(system)
    return sys.executable


def built_environment(with_probe: bool) -> Path:
    """A virtual environment that sees this one's packages, with the probe or not, built once
    and kept between runs under a key of what it holds; its python."""
    python = base_python()
    ours = [p for p in sys.path if p.endswith("site-packages")]
    probe = (PROBE_SOURCE, PROBE_METADATA) if with_probe else ()
    key = hashlib.sha256(repr((python, ours, *probe)).encode()).hexdigest()
    root = Path(tempfile.gettempdir()) / "giskard-test-envs" / key[:16]
    if not (root / "ready").exists():
        building = root.with_name(f"{root.name}.{os.getpid()}")
        subprocess.run(
            [python, "-m", "venv", "--without-pip", str(building)], check=True, timeout=120
        )
        (site,) = building.glob("lib/python*/site-packages")
        lines = [f"import site; site.addsitedir({path!r})" for path in ours]
        (site / "parent_env.pth").write_text("\n".join(lines) + "\n")
        if with_probe:
            write_probe(site)
        (building / "ready").touch()
        try:
            building.rename(root)
        except OSError:  # another run built it meanwhile
            shutil.rmtree(building, ignore_errors=True)
    return root / "bin" / "python"


@pytest.fixture(scope="session")
def probe_environment() -> Path:
    return built_environment(with_probe=True)


@pytest.fixture(scope="session")
def plain_environment() -> Path:
    """Built as the probe's environment, without the probe."""
    return built_environment(with_probe=False)


@pytest.fixture
def probe_version() -> str:
    """The probe's version here, where the jobs are pickled."""
    return PROBE_VERSION


@pytest.fixture
def probe_importable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, probe_version: str
) -> Iterator[None]:
    """The probe (with its .dist-info) and a loose module importable here, for pickling."""
    write_probe(tmp_path / "probe-site", probe_version)
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / f"{LOOSE}.py").write_text(
        "import os\n\n\ndef worker_pid():\n    return os.getppid()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "probe-site"))
    monkeypatch.syspath_prepend(str(tmp_path / "loose"))
    compat._version.cache_clear()  # the probe's version is this one's now
    yield
    for name in (PROBE, LOOSE):
        sys.modules.pop(name, None)
    compat._version.cache_clear()


@pytest.fixture
def start_in(
    hub: Hub, start_worker: Callable[..., WorkerProcess]
) -> Callable[[str, str], WorkerProcess]:
    """Start a worker of `hub` named NAME with the given python, once it is connected."""

    def start(python: str, name: str) -> WorkerProcess:
        args = ["-h", "127.0.0.1", "-p", str(hub.port), "--name", name]
        worker = start_worker(*args, python=python)
        worker.wait_for_output(CONNECTED, timeout_s=30)
        return worker

    return start


def worker_pid() -> int:
    return os.getppid()


def test_a_model_needing_a_package_runs_only_where_it_is_and_fails_at_once_elsewhere(
    probe_environment: Path,
    plain_environment: Path,
    probe_importable: None,
    start_in: Callable[[str, str], WorkerProcess],
    client: HubClient,
) -> None:
    from giskard_compat_probe import ProbeModel

    with_probe = start_in(str(probe_environment), "with-probe")
    without = start_in(str(plain_environment), "without-probe")  # connected last: active
    rows = np.zeros((3, 2))

    assert set(client.predict(ProbeModel(), rows)) == {with_probe.process.pid}
    # A job both can load still goes to the latest connected.
    assert client.call(worker_pid) == without.process.pid

    assert with_probe.stop() == 0
    wait_until(lambda: len(client.workers()) == 1, 30, "the worker with the probe gone")
    began = time.monotonic()
    with pytest.raises(IncompatibleEnvironmentError) as raised:
        client.predict(ProbeModel(), rows, wait_for_worker_s=30)
    assert time.monotonic() - began < 10  # at once, not after the wait
    error = raised.value
    assert error.reason is EndReason.INCOMPATIBLE_ENVIRONMENT
    assert "pickled on Python" in str(
        error
    ) and "worker without-probe lacks giskard-compat-probe" in str(error)
    assert Difference("without-probe", PROBE_DIST, "1.0", "", True) in error.differences
    refused = client.status()["recent"][-1]  # listed by the hub as every other end
    assert (refused["reason"], refused["detail"]) == (
        EndReason.INCOMPATIBLE_ENVIRONMENT,
        "IncompatibleEnvironment",
    )
    assert client.call(worker_pid) == without.process.pid


def test_a_job_waiting_for_a_worker_fails_at_once_when_one_that_cannot_load_it_comes(
    plain_environment: Path,
    probe_importable: None,
    start_in: Callable[[str, str], WorkerProcess],
    client: HubClient,
) -> None:
    from giskard_compat_probe import ProbeModel

    handle = client.submit_predict(ProbeModel(), np.zeros((3, 2)), wait_for_worker_s=60)
    wait_until(lambda: client.status()["waiting_for_worker"], 30, "the job to wait")
    start_in(str(plain_environment), "without-probe")
    came = time.monotonic()
    with pytest.raises(IncompatibleEnvironmentError, match="without-probe lacks"):
        handle.result(timeout=60)
    assert time.monotonic() - came < 30  # when the worker came, not after the 60 s wait


def test_a_pickle_that_fails_to_load_on_the_worker_says_how_the_environments_differ(
    plain_environment: Path,
    probe_importable: None,
    start_in: Callable[[str, str], WorkerProcess],
    client: HubClient,
) -> None:
    from giskard_loose_probe import worker_pid as loose_worker_pid

    start_in(str(plain_environment), "plain")
    with pytest.raises(IncompatibleEnvironmentError) as raised:
        client.call(loose_worker_pid)
    message = str(raised.value)
    assert f"ModuleNotFoundError: No module named '{LOOSE}'" in message
    assert "pickled on Python" in message
    assert raised.value.remote_type == "IncompatibleEnvironment"


@pytest.mark.parametrize("probe_version", ["0.9"])
def test_a_job_run_where_a_version_differs_reports_the_difference(
    probe_environment: Path,
    probe_importable: None,
    start_in: Callable[[str, str], WorkerProcess],
    client: HubClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from giskard_compat_probe import ProbeModel

    worker = start_in(str(probe_environment), "with-probe")
    handle = client.submit_predict(ProbeModel(), np.zeros((3, 2)))
    assert set(handle.result(timeout=60)) == {worker.process.pid}  # allowed: it loads
    difference = Difference("with-probe", PROBE_DIST, "0.9", PROBE_VERSION, False)
    assert handle.differences == [difference]
    warned = [r.getMessage() for r in caplog.records if r.name == "giskard.client"]
    assert warned == [
        "A job ran on a worker with other versions than it was pickled with: "
        f"{PROBE_DIST} 0.9 required, with-probe has {PROBE_VERSION} (may load)"
    ]
    client.predict(ProbeModel(), np.zeros((3, 2)))
    assert len([r for r in caplog.records if r.name == "giskard.client"]) == 1  # said once
