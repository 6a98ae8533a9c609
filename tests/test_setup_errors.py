"""A worker whose home cannot hold its files stops with one line naming the path, exit 78:
restarting cannot fix it, so a service must not loop on it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import giskard_command


def read_only(path: Path) -> list[str]:
    """The prefix of a command that runs with `path` read-only. Root ignores file modes, so
    for root the path is bind-mounted read-only in a mount namespace of the command's own."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return []
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(path)]


def start_worker(home: Path, prefix: list[str] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *giskard_command("worker", "start", "-p", "1")],
        env={**os.environ, "GISKARD_HOME": str(home), "GISKARD_API_KEY": ""},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def assert_fatal_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 78, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("giskard: error: cannot write the log file"), line
    assert all(word in line for word in words), line


@pytest.mark.parametrize("where", ["home", "run"])
def test_a_read_only_home_or_run_directory_is_one_fatal_line(tmp_path: Path, where: str) -> None:
    home = tmp_path / "home"
    read_only_dir = home / "run" if where == "run" else home
    read_only_dir.mkdir(parents=True)
    result = start_worker(home, read_only(read_only_dir))
    try:
        assert_fatal_line(result, str(home / "run" / "ml-worker.log"))
        assert "Read-only file system" in result.stderr or "Permission denied" in result.stderr
    finally:
        read_only_dir.chmod(0o755)


def test_a_directory_in_place_of_the_log_file_is_one_fatal_line(tmp_path: Path) -> None:
    log = tmp_path / "run" / "ml-worker.log"
    log.mkdir(parents=True)
    assert_fatal_line(start_worker(tmp_path), str(log), "Is a directory")
