"""The systemd backend against a real user manager and journald (see service_user.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from conftest import CONNECTED, free_port, wait_until
from service_user import ServiceUser, session_fixtures

from giskard.client import HubClient
from giskard.hub import Hub

UNIT = "giskard-worker"


user, clean = session_fixtures()


def unit_file(user: ServiceUser, name: str = UNIT) -> Path:
    return user.home / ".config" / "systemd" / "user" / f"{name}.service"


def main_pid(user: ServiceUser, name: str = UNIT) -> int:
    return int(user.show(name, "MainPID") or 0)


def journal_has(user: ServiceUser, text: str, count: int = 1, name: str = UNIT) -> bool:
    return user.journal(name, "-o", "cat").count(text) >= count


def test_start_d_runs_a_unit_bound_to_the_venv_and_journald_shows_the_connection(
    user: ServiceUser,
) -> None:
    assert " " in user.python and "%" in user.python
    with Hub(host="127.0.0.1", port=40051):
        result = user.giskard("worker", "start", "-d")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Backend: systemd" in result.stdout
        assert "Connected to the Giskard server at localhost:40051" in result.stdout
        assert "Logs: journalctl --user -u giskard-worker" in result.stdout
        assert "Stop: giskard worker stop" in result.stdout
        assert user.systemctl("is-active", UNIT).stdout.strip() == "active"
        pid = main_pid(user)
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == user.python.encode()
        wait_until(lambda: journal_has(user, CONNECTED), 10, "the journal to show the connection")
        assert "Connected to the Giskard server" in user.show(UNIT, "StatusText")
        verify = user.run("systemd-analyze", "--user", "verify", str(unit_file(user)))
        assert (verify.returncode, verify.stderr.strip()) == (0, "")


def test_killed_worker_is_restarted_by_systemd_and_reconnects(user: ServiceUser) -> None:
    with Hub(host="127.0.0.1", port=free_port()) as hub:
        name = f"giskard-worker-localhost-{hub.port}"
        args = ("-h", "127.0.0.1", "-p", str(hub.port))
        assert user.giskard("worker", "start", "-d", *args).returncode == 0
        first = main_pid(user, name)
        os.kill(first, signal.SIGKILL)

        def restarted() -> bool:
            active = user.systemctl("is-active", f"{name}.service").stdout.strip() == "active"
            return active and main_pid(user, name) not in (0, first)

        wait_until(restarted, 30, "systemd to restart the worker")
        with HubClient(hub.address) as client:
            wait_until(
                lambda: [w["pid"] for w in client.workers()] == [main_pid(user, name)],
                15,
                "the restarted worker to reconnect",
            )
        wait_until(lambda: journal_has(user, CONNECTED, 2, name), 10, "two connections logged")


def test_stop_leaves_no_unit_no_process_no_state(user: ServiceUser) -> None:
    with Hub(host="127.0.0.1", port=40051):
        assert user.giskard("worker", "start", "-d").returncode == 0
        pid = main_pid(user)
        result = user.giskard("worker", "stop")
        assert result.returncode == 0 and "Stopped systemd service giskard-worker" in result.stdout
    assert user.systemctl("is-active", UNIT).stdout.strip() in ("inactive", "unknown")
    assert not unit_file(user).exists()
    assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)
    state = user.home / "giskard-home" / "run" / "workers"
    assert not state.exists() or list(state.iterdir()) == []
    again = user.giskard("worker", "stop")
    assert again.returncode == 0 and "nothing to stop" in again.stdout


def test_two_hubs_two_services_stop_all_stops_both(user: ServiceUser) -> None:
    with Hub(port=free_port()) as first, Hub(port=free_port()) as second:
        names = []
        for hub in (first, second):
            result = user.giskard("worker", "start", "-d", "-h", "127.0.0.1", "-p", str(hub.port))
            assert result.returncode == 0, result.stderr
            names.append(f"giskard-worker-localhost-{hub.port}")
        status = json.loads(user.giskard("worker", "status", "--json").stdout)
        assert sorted(s["name"] for s in status) == sorted(names)
        assert all(s["state"] == "running" and s["connected"] for s in status)
        result = user.giskard("worker", "stop", "-a")
        assert result.returncode == 0 and result.stdout.count("Stopped systemd service") == 2
        for name in names:
            assert not unit_file(user, name).exists()
            assert user.systemctl("is-active", name).stdout.strip() != "active"


def test_a_drained_worker_stays_stopped_and_says_who_drained_it(user: ServiceUser) -> None:
    with Hub(host="127.0.0.1", port=free_port()) as hub, HubClient(hub.address) as client:
        args = ("-h", "127.0.0.1", "-p", str(hub.port))
        name = f"giskard-worker-localhost-{hub.port}"
        assert user.giskard("worker", "start", "-d", *args).returncode == 0
        pid = main_pid(user, name)
        [worker] = wait_until(client.workers, 15, "the worker to connect")
        assert worker["pid"] == pid
        admin = client.drain_worker(f"{pid}@{worker['hostname']}")
        assert admin["pid"] == pid
        # "inactive", not "activating (auto-restart)": systemd scheduled no restart.
        wait_until(
            lambda: user.systemctl("is-active", name).stdout.strip() == "inactive",
            30,
            "the drained unit to stop",
        )
        assert (user.show(name, "Result"), user.show(name, "NRestarts")) == ("success", "0")
        assert user.show(name, "ExecMainStatus") == "0"
        drained = "Drained by admin key 'local-admin-"
        wait_until(lambda: journal_has(user, drained, 1, name), 10, "who drained it, logged")
        status = user.giskard("worker", "status").stdout
        [line] = [line for line in status.splitlines() if name in line]
        assert drained in line and f"of the hub at localhost:{hub.port}" in line


def test_status_and_logs_show_the_truth(user: ServiceUser) -> None:
    port = free_port()  # no hub there: the worker runs and waits
    result = user.giskard("worker", "start", "-d", "-h", "127.0.0.1", "-p", str(port))
    assert result.returncode == 0, result.stderr
    assert f"Running, waiting for the Giskard server at 127.0.0.1:{port}" in result.stdout
    name = f"giskard-worker-localhost-{port}"
    (status,) = json.loads(user.giskard("worker", "status", "--json").stdout)
    assert status["backend"] == "systemd" and status["name"] == name
    assert status["state"] == "running" and status["connected"] is False
    assert status["pid"] == main_pid(user, name) and status["interpreter"] == user.python
    assert status["hub"] == f"localhost:{port}"  # the canonical spelling of the hub
    wait_until(lambda: journal_has(user, "Cannot reach", 1, name), 15, "a warning in the journal")
    logs = user.giskard("worker", "logs", "-h", "127.0.0.1", "-p", str(port), "-n", "50")
    assert logs.returncode == 0 and "Cannot reach the Giskard server" in logs.stdout
    # journald got the priorities from the <N> prefixes, and no timestamps in the messages.
    warnings = user.journal(name, "-p", "warning", "-o", "cat").splitlines()
    assert warnings and all(line.startswith("WARNING giskard.") for line in warnings)
    infos = user.journal(name, "-p", "info", "-o", "cat")
    assert "INFO giskard.worker.agent: Worker starting" in infos
    assert "INFO giskard" not in user.journal(name, "-p", "warning", "-o", "cat")


def test_repeat_is_a_no_op_from_any_executable_and_another_environment_rebinds(
    user: ServiceUser,
) -> None:
    port = str(free_port())  # no hub, so no key: the same service from every command

    def start_d(executable: str, *args: str) -> subprocess.CompletedProcess[str]:
        return user.run(executable, "-m", "giskard.cli", "worker", "start", "-d", *args)

    assert start_d(user.python, "-h", "127.0.0.1", "-p", port).returncode == 0
    name = f"giskard-worker-localhost-{port}"
    pid = main_pid(user, name)
    # Every executable of the environment and every loopback spelling: the same service.
    for executable, host in [(user.python, "localhost"), (f"{user.python}3", "::1")]:
        again = start_d(executable, "-h", host, "-p", port)
        assert again.returncode == 0 and "already running, unchanged" in again.stdout, again
    assert main_pid(user, name) == pid
    assert f"# Interpreter: {user.python}\n" in unit_file(user, name).read_text()
    other = other_environment(user)
    rebound = start_d(other, "-p", port)
    assert rebound.returncode == 0, rebound.stderr
    assert "rebound to a new interpreter" in rebound.stdout and user.python in rebound.stdout
    assert f"# Interpreter: {other}\n" in unit_file(user, name).read_text()
    assert main_pid(user, name) != pid


def other_environment(user: ServiceUser) -> str:
    """The python of another venv of the user, importing the packages of theirs."""
    venv = user.home / "venvs" / "other"
    if not (venv / "bin" / "python").exists():
        made = user.run("/usr/bin/python3", "-m", "venv", "--without-pip", str(venv))
        assert made.returncode == 0, made.stderr
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    ours = user.run(user.python, "-c", code).stdout.strip()
    theirs = user.run(str(venv / "bin" / "python"), "-c", code).stdout.strip()
    line = f"import site; site.addsitedir({ours!r})"
    user.run("sh", "-c", 'echo "$1" > "$2"', "sh", line, f"{theirs}/parent-venv.pth")
    return str(venv / "bin" / "python")


def test_a_failing_start_reports_why_a_crash_loop_ends_failed_and_start_d_recovers(
    user: ServiceUser,
) -> None:
    broken = user.home / "broken-home"
    user.run("touch", str(broken))  # GISKARD_HOME is a file: the worker cannot start
    args = ("-h", "127.0.0.1", "-p", str(free_port()))
    name = f"giskard-worker-localhost-{args[-1]}"
    env = {"GISKARD_HOME": str(broken), "GISKARD_API_KEY": ""}  # no key to store there
    failed = user.giskard("worker", "start", "-d", *args, env=env)
    assert failed.returncode == 1
    assert f"the service {name} failed to start" in failed.stderr
    assert "Last log lines:" in failed.stderr and "giskard: error:" in failed.stderr
    wait_until(
        lambda: user.show(name, "ActiveState") == "failed", 90, "the crash loop to end in failed"
    )
    user.run("rm", str(broken))
    recovered = user.giskard("worker", "start", "-d", *args, env=env)
    assert recovered.returncode == 0, recovered.stderr
    assert user.show(name, "ActiveState") == "active"


def test_enable_linger_that_cannot_be_done_changes_nothing(user: ServiceUser) -> None:
    result = user.giskard("worker", "start", "-d", "--enable-linger", "-p", str(free_port()))
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1].startswith("giskard: error: could not enable linger")
    )
    assert not any(unit_file(user, n).exists() for n in ("giskard-worker",))
    assert json.loads(user.giskard("worker", "status", "--json").stdout) == []


def _is_zombie(pid: int) -> bool:
    # PID 1 here reaps orphans late; a zombie is not a running process.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def test_restart_replaces_the_main_process(user: ServiceUser) -> None:
    args = ("-h", "127.0.0.1", "-p", str(free_port()))
    name = f"giskard-worker-localhost-{args[-1]}"
    assert user.giskard("worker", "start", "-d", *args).returncode == 0
    pid = main_pid(user, name)
    result = user.giskard("worker", "restart", *args)
    assert result.returncode == 0 and f"Restarted systemd service {name}" in result.stdout
    assert main_pid(user, name) not in (0, pid)
    assert user.show(name, "ActiveState") == "active"


def test_stop_all_removes_orphans(user: ServiceUser) -> None:
    # A unit file whose service is not running, and a running service whose file is gone.
    args = ("-h", "127.0.0.1", "-p", str(free_port()))
    running = f"giskard-worker-localhost-{args[-1]}"
    assert user.giskard("worker", "start", "-d", *args).returncode == 0
    user.run("rm", str(unit_file(user, running)))
    idle = unit_file(user, "giskard-worker-idle-1")
    user.run("cp", str(Path(__file__).parent / "golden" / "giskard-worker.service"), str(idle))
    status = {s["name"]: s for s in json.loads(user.giskard("worker", "status", "--json").stdout)}
    assert "unit file is gone" in status[running]["detail"]
    result = user.giskard("worker", "stop", "-a")
    assert result.returncode == 0, result.stderr
    assert f"Stopped systemd service {running}" in result.stdout
    assert "Stopped systemd service giskard-worker-idle-1" in result.stdout
    assert not idle.exists()
    assert user.show(running, "ActiveState") != "active"


def test_the_key_never_appears_in_the_unit_argv_or_journal(user: ServiceUser) -> None:
    with Hub(host="127.0.0.1", port=free_port()) as hub:
        args = ("-h", "127.0.0.1", "-p", str(hub.port))
        name = f"giskard-worker-localhost-{hub.port}"
        result = user.giskard("worker", "start", "-d", *args)
        assert result.returncode == 0, result.stderr
        assert "Connected to the Giskard server" in result.stdout
        key = hub.admin_key
        assert key not in unit_file(user, name).read_text()
        assert key.encode() not in Path(f"/proc/{main_pid(user, name)}/cmdline").read_bytes()
        wait_until(lambda: journal_has(user, CONNECTED, 1, name), 10, "the connection")
        assert key not in user.journal(name)
        secrets = user.home / "giskard-home" / "secrets"
        assert oct(secrets.stat().st_mode & 0o777) == "0o700"
        assert oct((secrets / f"{name}.key").stat().st_mode & 0o777) == "0o600"
        assert user.giskard("worker", "stop", *args).returncode == 0
        assert not (secrets / f"{name}.key").exists()


def test_logs_fall_back_to_the_log_file_when_the_journal_is_unreadable(
    user: ServiceUser,
) -> None:
    args = ("-h", "127.0.0.1", "-p", str(free_port()))
    name = f"giskard-worker-localhost-{args[-1]}"
    assert user.giskard("worker", "start", "-d", *args).returncode == 0
    wait_until(lambda: journal_has(user, "Cannot reach", 1, name), 15, "a line in the journal")
    journals = list(Path("/var/log/journal").rglob(f"user-{user.uid}*.journal"))
    assert journals, "journald keeps per-user files here"
    modes = {path: path.stat().st_mode for path in journals}
    try:
        for path in journals:
            path.chmod(0o000)  # as root: the user can no longer read their journal
        logs = user.giskard("worker", "logs", *args, "-n", "20")
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert logs.returncode == 0, logs.stderr
    first, *rest = logs.stdout.splitlines()
    assert first.startswith("(the user journal is not readable")
    assert "ml-worker.log" in first
    assert any("Cannot reach the Giskard server" in line for line in rest)


def test_the_system_template_runs_for_real_but_for_its_user_switch(user: ServiceUser) -> None:
    """The system service's template and drop-in under the user's manager, which is real:
    only User= and Group= are left out (a user manager cannot switch users, and no system
    manager runs here). The worker gets its key through LoadCredential= and connects."""
    from giskard.address import HubAddress
    from giskard.installer.base import ServiceSpec
    from giskard.installer.system import SystemServiceBackend

    root = Path(tempfile.mkdtemp(prefix="giskard-system-root-"))
    root.chmod(0o755)
    units = user.home / ".config" / "systemd" / "user"
    with Hub(host="127.0.0.1", port=free_port()) as hub, HubClient(hub.address) as client:
        backend = SystemServiceBackend(root=root)
        spec = ServiceSpec(
            address=HubAddress("127.0.0.1", hub.port),
            interpreter=user.python,
            verbose=False,
            path=f"{Path(user.python).parent}:/usr/bin:/bin",
            home=str(user.home),
            giskard_home="-",
            run_as=user.name,
            run_as_group=user.name,
        )
        unit = backend.unit(spec.name)
        try:
            for path, text in backend.files(spec).items():
                kept = [
                    line for line in text.splitlines() if not line.startswith(("User=", "Group="))
                ]
                target = units / path.relative_to(backend.unit_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("\n".join(kept) + "\n")
            backend.store_key(spec.name, hub.admin_key)
            shutil.chown(backend.key_dir, user.name)  # the user's manager reads it here
            shutil.chown(backend.key_path(spec.name), user.name)
            assert user.systemctl("daemon-reload").returncode == 0
            started = user.systemctl("start", unit)
            assert started.returncode == 0, started.stderr
            pid = main_pid(user, unit)
            wait_until(lambda: [w["pid"] for w in client.workers()] == [pid], 20, "a connection")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert not any(hub.admin_key.encode() in entry for entry in environ)
            assert any(entry.startswith(b"CREDENTIALS_DIRECTORY=") for entry in environ)
            home = next(e for e in environ if e.startswith(b"GISKARD_HOME=")).decode()
            assert home.endswith(f"/giskard-worker/{spec.name}")
            assert "Connected to the Giskard server" in user.show(unit, "StatusText")
        finally:
            user.systemctl("stop", unit)
            for path in units.glob("giskard-worker@*"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            user.systemctl("daemon-reload")
            shutil.rmtree(root)
