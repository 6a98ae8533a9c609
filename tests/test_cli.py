"""The command line: help, argument errors, cheap imports, `python -m giskard.cli`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import PipeLines, WorkerProcess, giskard_command

from giskard.hub import Hub


def run(*args: str, timeout_s: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        giskard_command(*args), capture_output=True, text=True, timeout=timeout_s, check=False
    )


def test_worker_start_help_lists_every_option() -> None:
    result = run("worker", "start", "--help")
    assert result.returncode == 0
    for option in ("--host", "-h", "--port", "-p", "--verbose", "--help"):
        assert option in result.stdout


def test_dash_h_is_the_host_not_help() -> None:
    # Port 1 on loopback refuses at once: the worker says so, naming the host it was given.
    process = subprocess.Popen(
        giskard_command("worker", "start", "-h", "127.0.0.1", "-p", "1"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = PipeLines(process.stderr).wait_for("Cannot reach", timeout_s=20)
        assert "Cannot reach the Giskard server at 127.0.0.1:1" in line
    finally:
        process.terminate()
        process.communicate(timeout=20)
    assert process.returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "abc"], "'-p' / '--port'"),
        (["-p", "0"], "'-p' / '--port'"),
        (["-p", "70000"], "'-p' / '--port'"),
        (["-h", ""], "the host must not be empty"),
        (["-h", "bad host"], "invalid host"),
        (["--no-such-option"], "No such option"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run("worker", "start", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("giskard: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("option", ["--help", "--version"])
def test_help_and_version_do_not_import_heavy_modules(option: str) -> None:
    code = (
        "import sys\n"
        "from giskard.cli import main\n"
        "try:\n"
        f"    main([{option!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'grpc', 'pandas', 'cloudpickle', 'numpy'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_python_dash_m_and_console_script_agree() -> None:
    import shutil

    script = shutil.which("giskard", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert script, "the console script is installed beside the interpreter"
    via_script = subprocess.run(
        [script, "worker", "--help"], capture_output=True, text=True, timeout=20, check=True
    )
    assert via_script.stdout == run("worker", "--help").stdout


def test_version_names_the_package_python_and_protocol() -> None:
    import platform

    from giskard import __version__
    from giskard.protocol import PROTOCOL_VERSION

    result = run("--version")
    assert result.returncode == 0, result.stderr
    python = f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})"
    assert result.stdout.splitlines() == [
        f"giskard-worker {__version__}",
        f"protocol {PROTOCOL_VERSION}",
        f"Python {python}",
    ]


def test_hub_workers_json(hub: Hub, connected_worker: WorkerProcess) -> None:
    result = run("hub", "workers", "-h", "127.0.0.1", "-p", str(hub.port), "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    (worker,) = status["workers"]
    assert worker["pid"] == connected_worker.process.pid
    assert worker["active"] is True
    assert (worker["concurrency"], worker["running"], status["queued"]) == (1, [], 0)


def test_hub_workers_summary(hub: Hub, connected_worker: WorkerProcess) -> None:
    result = run("hub", "workers", "-h", "127.0.0.1", "-p", str(hub.port))
    assert result.returncode == 0, result.stderr
    assert f"active  pid {connected_worker.process.pid}" in result.stdout
    assert "0/1 slots busy" in result.stdout
    assert "0 job(s) queued." in result.stdout


def test_hub_workers_without_a_hub_says_so_in_one_line() -> None:
    from conftest import free_port

    result = run("hub", "workers", "-h", "127.0.0.1", "-p", str(free_port()))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip(),
    ]
    assert "cannot reach the hub" in result.stderr


def test_hub_refuses_a_port_in_use(hub: Hub) -> None:
    result = run("hub", "start", "-p", str(hub.port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{hub.port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_hub_start_stops_cleanly_on_sigterm() -> None:
    import signal

    from conftest import free_port

    command = giskard_command("hub", "start", "-p", str(free_port()))
    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        try:
            lines = PipeLines(process.stderr)
            lines.wait_for("Hub listening on", timeout_s=10)
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
        finally:
            process.kill()
        rest = "".join(lines.rest(timeout_s=10))
    assert "Hub stopping" in rest and "Traceback" not in rest


def test_a_bad_size_is_one_line_naming_the_option() -> None:
    result = run("worker", "start", "--max-job-memory", "lots")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "giskard: error: Invalid value for --max-job-memory: 'lots' is not a size;"
        " write e.g. 512M, 2G or a number of bytes (see --help)"
    ]
