"""The system-wide service for fleets: its template unit and per-instance drop-in (golden
files, `systemd-analyze verify`), the worker finding its key where LoadCredential= puts it,
bad input refused before anything is written, and the commands the CLI runs.

A real system manager cannot run here: systemd is installed but is not PID 1, and systemd
started as PID 1 of a PID namespace shares this machine's cgroup tree (it creates its
init.scope at the root) without answering systemctl. The tests that would need one check
the exact systemctl and journalctl command lines instead and say so in their names; the
rendered units run for real, but for their user switch, under the user manager of
test_service_systemd.py.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import free_port, giskard_command, wait_until

from giskard.address import HubAddress
from giskard.client import HubClient
from giskard.hub import Hub
from giskard.installer.base import ServiceSpec
from giskard.installer.commands import Result
from giskard.installer.naming import service_name
from giskard.installer.system import (
    SYSTEM_ROOT_ENV,
    SystemServiceBackend,
    install_instance,
    stop_system_service,
    system_manager_problem,
)

GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("GISKARD_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; set GISKARD_UPDATE_GOLDEN=1 to accept"


def spec(
    host: str = "localhost",
    port: int = 40051,
    interpreter: str = "/opt/giskard/venv/bin/python",
    user: str = "svc-giskard",
) -> ServiceSpec:
    return ServiceSpec(
        address=HubAddress(host, port),
        interpreter=interpreter,
        verbose=False,
        path="/opt/giskard/venv/bin:/usr/bin:/bin",
        home="/root",
        giskard_home="/root/giskard-home",
        extra_args=("--concurrency=2", "--cache-size=2G"),
        run_as=user,
        run_as_group=user,
    )


def test_system_template_unit_golden() -> None:
    template = SystemServiceBackend(root=Path("/")).render_template()
    check_golden("giskard-worker@.service", template)
    settings = [line for line in template.splitlines() if not line.startswith("#")]
    assert "LoadCredential=giskard-api-key:/etc/giskard-worker/%i.key" in settings
    for hardening in ("NoNewPrivileges=yes", "ProtectSystem=full", "PrivateTmp=yes"):
        assert hardening in settings
    # Named in a comment saying why it is left out, and never set: JITs need it off.
    assert not any("MemoryDenyWriteExecute" in line for line in settings)
    assert "MemoryDenyWriteExecute" in template


def test_system_instance_drop_in_golden() -> None:
    backend = SystemServiceBackend(root=Path("/"))
    the_spec = spec("10.0.0.7", 41000, "/opt/my envs/100% py/bin/python")
    drop_in = backend.render_unit(the_spec)
    check_golden("giskard-worker@giskard-worker-10.0.0.7-41000.service.d.conf", drop_in)
    assert "User=svc-giskard\nGroup=svc-giskard\n" in drop_in
    assert 'ExecStart="/opt/my envs/100%% py/bin/python" "-m" "giskard.cli"' in drop_in
    assert 'ReadOnlyPaths="/opt/my envs/100%% py"\n' in drop_in
    # The key is a credential; the home and the service name come from the template.
    assert "api-key" not in drop_in and "GISKARD_HOME" not in drop_in
    path = backend.unit_path(the_spec.name)
    assert str(path) == (
        "/etc/systemd/system/giskard-worker@giskard-worker-10.0.0.7-41000.service.d/giskard.conf"
    )


@pytest.mark.parametrize(
    ("host", "port"), [("localhost", 40051), ("10.0.0.7", 41000), ("2001:db8::1", 40051)]
)
def test_rendered_system_units_pass_systemd_analyze_verify(
    tmp_path: Path, host: str, port: int
) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    backend = SystemServiceBackend(root=tmp_path)
    user = pwd.getpwuid(os.getuid()).pw_name
    the_spec = spec(host, port, interpreter=sys.executable, user=user)
    for path, text in backend.files(the_spec).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    unit = backend.unit(the_spec.name)
    # Our directory first, then systemd's own (for network-online.target and the like).
    verify = subprocess.run(
        ["systemd-analyze", "verify", unit],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{backend.unit_dir}:"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (verify.returncode, verify.stderr.strip()) == (0, "")


def test_the_worker_reads_its_key_from_the_systemd_credentials_directory(
    tmp_path: Path, hub: Hub, client: HubClient, start_worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "giskard-api-key").write_text(hub.admin_key + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), api_key="")
    wait_until(client.workers, 20, "the worker to connect with the credential's key")
    assert [w["pid"] for w in client.workers()] == [worker.process.pid]


def test_a_client_under_another_unit_ignores_its_credentials(
    tmp_path: Path, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the worker reads the service's credential: a HubClient or CLI run by another
    unit that has credentials of its own keeps using $GISKARD_API_KEY."""
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    for name in ("api-key", "giskard-api-key"):
        (credentials / name).write_text("not-this-hubs-key\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    monkeypatch.setenv("GISKARD_API_KEY", hub.admin_key)
    with HubClient(f"127.0.0.1:{hub.port}") as client:
        assert client.workers() == []


@pytest.fixture
def system_root() -> Iterator[Path]:
    """Where the CLI's /etc goes in these tests; writable by anyone, so that a command run
    without root would leave its files there, to be seen."""
    root = Path(tempfile.mkdtemp(prefix="giskard-system-root-"))
    root.chmod(0o777)
    yield root
    shutil.rmtree(root)


def run_cli(
    root: Path,
    *args: str,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
    python: str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, SYSTEM_ROOT_ENV: str(root), "GISKARD_API_KEY": "k-123"}
    return subprocess.run(
        [*prefix, *giskard_command(*args, python=python)],
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def written(root: Path) -> list[Path]:
    home = Path(os.environ["GISKARD_HOME"])
    return [*root.rglob("*"), *(home / "secrets").glob("*")]


START = ("worker", "start", "-d", "-h", "hub.example.com")


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (
            (*START[:2], "--system", "--run-as", "nobody"),
            {},
            2,
            "--system installs a service: add -d",
        ),
        ((*START, "--system"), {}, 2, "--system needs --run-as USER"),
        ((*START, "--run-as", "nobody"), {}, 2, "--run-as is for the system-wide service"),
        ((*START, "--system", "--run-as", "no-such-user-42"), {}, 78, "no such user"),
        ((*START, "--system", "--run-as", "root"), {}, 78, "must run as an unprivileged user"),
        (
            ("worker", "start", "-d", "-h", "hub\x1bexample.com", "--system", "--run-as", "nobody"),
            {},
            2,
            "it has a control character",
        ),
        (
            (
                "worker",
                "start",
                "-d",
                "-h",
                "hub\nExecStartPre=/x",
                "--system",
                "--run-as",
                "nobody",
            ),
            {},
            2,
            "invalid host",
        ),
        ((*START, "--system", "--run-as", "nobody"), {"GISKARD_API_KEY": ""}, 78, "API key"),
        (
            (*START, "--system", "--run-as", "nobody", "--backend", "process"),
            {},
            2,
            "--backend is for a per-user service",
        ),
        (
            (*START, "--system", "--run-as", "nobody", "--enable-linger"),
            {},
            2,
            "--enable-linger is for a per-user service",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    system_root: Path, args: tuple[str, ...], env: dict[str, str], code: int, message: str
) -> None:
    result = run_cli(system_root, *args, env=env)
    assert result.returncode == code, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("giskard: error:") and message in line
    assert written(system_root) == []


@pytest.fixture
def not_root() -> tuple[str, ...]:
    """What runs a command as a user who is not root: nothing when the tests are not root;
    as root, a user namespace, where the command runs as an unmapped user."""
    if os.geteuid() != 0:
        return ()
    if subprocess.run(["unshare", "--user", "true"], check=False).returncode != 0:
        pytest.skip("user namespaces are not available to stand in for a non-root user")
    return ("unshare", "--user")


def test_system_without_root_is_refused_and_writes_nothing(
    system_root: Path, not_root: tuple[str, ...]
) -> None:
    result = run_cli(system_root, *START, "--system", "--run-as", "nobody", prefix=not_root)
    assert result.returncode == 78, result.stderr
    assert result.stderr.strip() == (
        "giskard: error: --system installs a system-wide service: run it as root (sudo)"
    )
    assert written(system_root) == []


def test_no_system_manager_is_refused_and_writes_nothing(system_root: Path) -> None:
    problem = system_manager_problem()
    if problem is None or os.geteuid() != 0:
        pytest.skip("needs root on a machine whose systemd is not PID 1")
    result = run_cli(system_root, *START, "--system", "--run-as", "nobody")
    assert result.returncode == 1
    assert result.stderr.strip() == f"giskard: error: cannot install a system service: {problem}"
    assert written(system_root) == []


def environment_of_another_user(where: Path, how: str) -> Path:
    """A venv that runs this project, which a user other than root may change (`how`:
    "owner" it belongs to nobody, "group-writable" its site-packages, "pth elsewhere" a
    .pth of its adds a directory of nobody's, "pyvenv.cfg", "pip.conf" or "lib dir" is
    nobody's, "symlink hop" its bin/python links through a directory of nobody's; anything
    else: root's alone); at its every start it writes the file `ran-as-root` where it is:
    what anyone with its .pth could run."""
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site_packages,) = venv.glob("lib/python*/site-packages")
    project = sysconfig.get_paths()["purelib"]
    marker = where / "ran-as-root"
    (site_packages / "project.pth").write_text(
        f"import site; site.addsitedir({project!r})\n"
        f"import os; os.geteuid() == 0 and open({str(marker)!r}, 'w').close()\n"
    )
    if how == "owner":
        give_to_nobody(venv, *venv.rglob("*"))
    elif how == "group-writable":
        site_packages.chmod(0o775)
    elif how in ("pyvenv.cfg", "pip.conf"):  # the stdlib it runs; the index pip installs from
        (venv / how).touch()
        give_to_nobody(venv / how)
    elif how == "lib dir":
        give_to_nobody(venv / "lib")
    elif how == "symlink hop":  # bin/python -> hop/python -> the real one
        hop = where / "hop"
        hop.mkdir()
        give_to_nobody(hop)
        (hop / "python").symlink_to(os.path.realpath(venv / "bin" / "python"))
        (venv / "bin" / "python").unlink()
        (venv / "bin" / "python").symlink_to(hop / "python")
    elif how == "pth elsewhere":  # as an editable install writes it
        elsewhere = where / "dev"
        elsewhere.mkdir()
        give_to_nobody(elsewhere)
        (site_packages / "dev.pth").write_text(f"{elsewhere}\n")
    return venv


def give_to_nobody(*paths: Path) -> None:
    for path in paths:
        os.lchown(path, pwd.getpwnam("nobody").pw_uid, -1)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory of root's that anyone may enter: there, nobody can read a venv of root's,
    as the check of what root may run does."""
    where = Path(tempfile.mkdtemp(prefix="giskard-env-"))
    where.chmod(0o755)
    yield where
    shutil.rmtree(where)


@pytest.mark.parametrize(
    ("how", "problem"),
    [("owner", "venv belongs to nobody, not root"), ("group-writable", "is writable by its group")],
)
def test_start_refuses_an_environment_root_does_not_own_alone(
    system_root: Path, tmp_path: Path, how: str, problem: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, as --system does, to give a file to another user")
    venv = environment_of_another_user(tmp_path, how)
    python = str(venv / "bin" / "python")
    result = run_cli(system_root, *START, "--system", "--run-as", "nobody", python=python)
    assert result.returncode == 78, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"giskard: error: root would run {python}, which others can change: ")
    assert problem in line
    assert written(system_root) == []


def upgrade_system_service_of(root: Path, interpreter: str) -> subprocess.CompletedProcess[str]:
    """`upgrade --system` of an instance (its files written, no system manager) that runs
    `interpreter`, run from this checkout's environment."""
    backend = SystemServiceBackend(root=root)
    for path, text in backend.files(spec("10.0.0.7", 41000, interpreter=interpreter)).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    args = ("worker", "upgrade", "--system", "-h", "10.0.0.7", "-p", "41000")
    return run_cli(root, *args, "--requirement", "giskard-worker")


@pytest.mark.parametrize(
    ("how", "problem"),
    [
        ("owner", "venv belongs to nobody, not root"),
        ("pth elsewhere", "dev belongs to nobody, not root"),
        ("pyvenv.cfg", "pyvenv.cfg belongs to nobody, not root"),
        ("pip.conf", "pip.conf belongs to nobody, not root"),
        ("lib dir", "venv/lib belongs to nobody, not root"),
        ("symlink hop", "hop belongs to nobody, not root"),
    ],
)
def test_upgrade_refuses_an_environment_root_does_not_own_alone_and_runs_nothing(
    system_root: Path, open_dir: Path, how: str, problem: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, as --system does, to give a file to another user")
    venv = environment_of_another_user(open_dir, how)
    result = upgrade_system_service_of(system_root, str(venv / "bin" / "python"))
    assert result.returncode == 78, result.stderr
    [line] = result.stderr.splitlines()
    assert problem in line
    assert not (open_dir / "ran-as-root").exists()


def test_an_environment_nobody_cannot_run_is_refused(system_root: Path, tmp_path: Path) -> None:
    """Where it imports from is asked of the interpreter run as nobody, never as root: in an
    environment nobody cannot enter (tmp_path is root's, 0700), Python runs its base
    installation instead, whose paths say nothing of the environment: refused."""
    if os.geteuid() != 0:
        pytest.skip("needs root, as --system does, to run the interpreter as nobody")
    venv = environment_of_another_user(tmp_path, "root's alone")
    python = str(venv / "bin" / "python")
    result = upgrade_system_service_of(system_root, python)
    assert result.returncode == 78, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"giskard: error: root would run {python}, which others can change: ")
    assert line.endswith(
        f", not {venv}: it must be readable by all (give the service an"
        " environment that only root can write)"
    )
    assert not (tmp_path / "ran-as-root").exists()


def test_upgrade_runs_pip_and_the_version_probe_away_from_where_it_is_run(
    tmp_path: Path,
) -> None:
    """`python -m pip` would import a pip.py of the directory upgrade runs in (as root, for
    the system service): pip and the probe run from /, with the interpreter's own paths."""
    here = tmp_path / "here"
    here.mkdir()
    marker = tmp_path / "planted-code-ran"
    (here / "pip.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    env = {**os.environ, "GISKARD_HOME": str(tmp_path / "home"), "GISKARD_API_KEY": "k-123"}
    args = ("-h", "127.0.0.1", "-p", str(free_port()))  # no hub: the worker waits

    def giskard(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            giskard_command("worker", *command, *args),
            cwd=here,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    started = giskard("start", "-d", "--backend", "process")
    assert started.returncode == 0, started.stderr
    try:
        result = giskard(
            "upgrade", "--requirement", "/nonexistent/giskard_worker-99.0-py3-none-any.whl"
        )
    finally:
        assert giskard("stop").returncode == 0
    assert "giskard: error: pip could not install" in result.stderr, result.stderr
    assert not marker.exists()


class RecordingSystemctl:
    """Stands in for systemctl and journalctl where no system manager runs: records each
    command line and answers like the manager would."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.active: set[str] = set()

    def __call__(
        self, argv: Sequence[str], *, check: bool = False, timeout_s: float = 30
    ) -> Result:
        self.calls.append(list(argv))
        tool, *rest = argv
        if tool == "journalctl":
            return Result(
                tuple(argv), 0, "2026-11-29T00:00:00+0000 host giskard-worker[7]: hi\n", ""
            )
        command, unit = rest[1], rest[-1]
        if command == "show":
            unit = rest[2]
            active = unit in self.active
            state = "ActiveState=active\nMainPID=4242\n" if active else "ActiveState=inactive\n"
            return Result(tuple(argv), 0, f"LoadState=loaded\n{state}", "")
        if command == "restart":
            self.active.add(unit)
        if command in ("stop", "disable"):
            self.active.discard(unit)
        return Result(tuple(argv), 0, "", "")

    def commands(self) -> list[list[str]]:
        """The calls, without the queries (`show`, `list-units`) between them."""
        return [call for call in self.calls if not {"show", "list-units"} & set(call)]


def test_install_stop_and_logs_run_these_commands_without_a_system_manager(
    tmp_path: Path,
) -> None:
    systemctl = RecordingSystemctl()
    backend = SystemServiceBackend(runner=systemctl, root=tmp_path)
    the_spec = spec("10.0.0.7", 41000)
    name = the_spec.name
    unit = "giskard-worker@giskard-worker-10.0.0.7-41000.service"
    backend.store_key(name, "k-123")
    outcome = backend.install(the_spec)
    assert (outcome.action.name, outcome.pid) == ("INSTALLED", 4242)
    assert systemctl.commands() == [
        ["systemctl", "--no-pager", "daemon-reload"],
        ["systemctl", "--no-pager", "reset-failed", unit],
        ["systemctl", "--no-pager", "enable", unit],
        ["systemctl", "--no-pager", "restart", unit],
    ]
    etc = tmp_path / "etc"
    assert oct((etc / "giskard-worker").stat().st_mode & 0o777) == "0o700"
    assert oct((etc / "giskard-worker" / f"{name}.key").stat().st_mode & 0o777) == "0o600"
    assert (etc / "systemd" / "system" / "giskard-worker@.service").exists()
    assert backend.names() == [name]
    status = backend.status(name)
    assert status is not None and status.state == "running"
    assert (status.interpreter, status.hub) == (the_spec.interpreter, "10.0.0.7:41000")

    systemctl.calls.clear()
    assert backend.install(the_spec).action.name == "UNCHANGED"
    assert systemctl.commands() == []

    assert backend.log_lines(name, 20) == ["2026-11-29T00:00:00+0000 host giskard-worker[7]: hi"]
    assert systemctl.calls[-1] == [
        "journalctl", "-u", unit, "-n", "20", "--no-pager", "-o", "short-iso",
    ]  # fmt: skip
    assert backend.logs_hint(name) == "journalctl -u giskard-worker@giskard-worker-10.0.0.7-41000"

    systemctl.calls.clear()
    assert backend.stop(name) is True
    assert systemctl.commands() == [
        ["systemctl", "--no-pager", "disable", "--now", unit],
        ["systemctl", "--no-pager", "daemon-reload"],
        ["systemctl", "--no-pager", "reset-failed", unit],
    ]
    # The last instance gone, nothing of it stays: drop-in, key, template.
    assert [p for p in etc.rglob("*") if p.is_file()] == []


def test_a_new_key_alone_restarts_the_instance_without_a_system_manager(tmp_path: Path) -> None:
    systemctl = RecordingSystemctl()
    backend = SystemServiceBackend(runner=systemctl, root=tmp_path)
    unit = "giskard-worker@giskard-worker.service"
    assert install_instance(backend, spec(), "k-1").action.name == "INSTALLED"
    systemctl.calls.clear()
    assert install_instance(backend, spec(), "k-1").action.name == "UNCHANGED"
    assert systemctl.commands() == []
    assert install_instance(backend, spec(), "k-2").action.name == "UPDATED"
    assert systemctl.commands() == [
        ["systemctl", "--no-pager", "reset-failed", unit],
        ["systemctl", "--no-pager", "restart", unit],
    ]
    assert backend.key_path(spec().name).read_text() == "k-2\n"


def test_a_new_template_restarts_the_other_running_instances_without_a_system_manager(
    tmp_path: Path,
) -> None:
    """Every instance runs the one template: when an install rewrites it, the instances
    running the old one are restarted, or a later start of theirs would say "unchanged"."""
    systemctl = RecordingSystemctl()
    backend = SystemServiceBackend(runner=systemctl, root=tmp_path)
    first, running, stopped = spec(), spec("10.0.0.7", 41000), spec("10.0.0.8", 41000)
    for the_spec in (first, running, stopped):
        install_instance(backend, the_spec, "k-1")
    systemctl.active.discard(backend.unit(stopped.name))
    # What an older giskard-worker wrote.
    old = backend.render_template().replace("RestartSec=5", "RestartSec=1")
    backend.template_path.write_text(old)
    systemctl.calls.clear()
    outcome = install_instance(backend, first, "k-1")
    unit, other = backend.unit(first.name), backend.unit(running.name)
    assert systemctl.commands() == [
        ["systemctl", "--no-pager", "daemon-reload"],
        ["systemctl", "--no-pager", "reset-failed", unit],
        ["systemctl", "--no-pager", "enable", unit],
        ["systemctl", "--no-pager", "restart", unit],
        ["systemctl", "--no-pager", "reset-failed", other],
        ["systemctl", "--no-pager", "restart", other],
    ]
    assert (outcome.action.name, outcome.also_restarted) == ("UPDATED", (other,))
    systemctl.calls.clear()
    assert install_instance(backend, running, "k-1").action.name == "UNCHANGED"
    assert systemctl.commands() == []


def test_stop_all_stops_every_instance_without_a_system_manager(tmp_path: Path) -> None:
    systemctl = RecordingSystemctl()
    backend = SystemServiceBackend(runner=systemctl, root=tmp_path)
    specs = [spec(), spec("10.0.0.7", 41000)]
    for the_spec in specs:
        install_instance(backend, the_spec, "k-1")
    assert stop_system_service(HubAddress("10.0.0.9", 40051), backend) == []
    stopped = stop_system_service(None, backend)
    assert stopped == [f"system service {backend.unit(s.name)}" for s in specs]
    disabled = [call[-1] for call in systemctl.calls if "disable" in call]
    assert disabled == [backend.unit(s.name) for s in specs]
    assert backend.names() == [] and list((tmp_path / "etc").rglob("*.*")) == []


def test_logs_fall_back_to_the_instances_own_log_without_a_system_manager(
    tmp_path: Path,
) -> None:
    def empty_journal(argv: Sequence[str], **_: object) -> Result:
        return Result(tuple(argv), 0, "-- No entries --\n", "")

    backend = SystemServiceBackend(runner=empty_journal, root=tmp_path)
    log = tmp_path / "var" / "lib" / "giskard-worker" / "giskard-worker" / "run" / "ml-worker.log"
    log.parent.mkdir(parents=True)
    log.write_text("first\nWARNING giskard.worker: Cannot reach the Giskard server\n")
    first, *rest = backend.log_lines("giskard-worker", 10)
    assert first == f"(the journal has no entries for it; showing {log})"
    assert rest == ["first", "WARNING giskard.worker: Cannot reach the Giskard server"]


@pytest.mark.parametrize("follow", [(), ("-f",)])
def test_logs_of_an_unreadable_instance_log_say_who_can_read_it(
    system_root: Path, not_root: tuple[str, ...], follow: tuple[str, ...]
) -> None:
    backend = SystemServiceBackend(root=system_root)
    the_spec = spec("10.0.0.7", 41000)
    for path, text in backend.files(the_spec).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    log = backend.log_file(the_spec.name)
    log.parent.mkdir(parents=True, mode=0o700)
    log.write_text("a line only root may read\n")
    # Mode 0: in a user namespace, the file's owner may be this very process from outside.
    log.chmod(0)
    args = ("worker", "logs", "--system", "-h", "10.0.0.7", "-p", "41000", *follow)
    result = run_cli(system_root, *args, prefix=not_root)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"giskard: error: cannot read {log}: run as root (or as a member of systemd-journal,"
        " journalctl -u giskard-worker@giskard-worker-10.0.0.7-41000)"
    )


def test_halt_and_restart_for_an_upgrade_without_a_system_manager(tmp_path: Path) -> None:
    systemctl = RecordingSystemctl()
    backend = SystemServiceBackend(runner=systemctl, root=tmp_path)
    name = spec().name
    backend.install(spec())
    systemctl.calls.clear()
    backend.halt(name)
    backend.restart(name)
    unit = "giskard-worker@giskard-worker.service"
    assert systemctl.commands() == [
        ["systemctl", "--no-pager", "stop", unit],
        ["systemctl", "--no-pager", "reset-failed", unit],
        ["systemctl", "--no-pager", "restart", unit],
    ]


def test_status_system_reads_the_instances_from_their_files(system_root: Path) -> None:
    backend = SystemServiceBackend(root=system_root)
    the_spec = spec("10.0.0.7", 41000)
    for path, text in backend.files(the_spec).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    result = run_cli(system_root, "worker", "status", "--system", "--json")
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert (row["backend"], row["name"]) == ("system", the_spec.name)
    assert (row["interpreter"], row["hub"]) == (the_spec.interpreter, "10.0.0.7:41000")


@pytest.mark.parametrize("command", ["logs", "restart", "upgrade"])
def test_commands_on_a_missing_system_service_say_so(system_root: Path, command: str) -> None:
    result = run_cli(system_root, "worker", command, "--system", "-h", "10.0.0.9")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "giskard: error: no system-wide worker service for 10.0.0.9:40051"
        " (see `giskard worker status --system`)"
    )
    assert written(system_root) == []


def test_instance_names_are_the_service_names() -> None:
    backend = SystemServiceBackend(root=Path("/"))
    for host in ("localhost", "Hub.Example.COM", "2001:db8::1", "a_b"):
        name = service_name(HubAddress(host, 40051))
        assert backend.unit(name) == f"giskard-worker@{name}.service"
