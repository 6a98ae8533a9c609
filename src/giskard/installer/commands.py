"""Running service-manager tools: never a pager, never a prompt, never a hang."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from giskard.errors import InstallerError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def first_error_line(self) -> str:
        text = (self.stderr or self.stdout).strip()
        return text.splitlines()[-1] if text else f"exit code {self.returncode}"


def run_tool(
    argv: Sequence[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    check: bool = False,
    cwd: str | None = None,
) -> Result:
    """Run `argv` with stdin from /dev/null, no pager, and a timeout; in `cwd` when given,
    else where we run.

    Failing to run at all (missing tool, timeout) raises InstallerError with one line; a
    non-zero exit is returned (or raised with `check=True`) for the caller to explain.
    """
    env = {**os.environ, "SYSTEMD_PAGER": "", "PAGER": "cat", "SYSTEMD_COLORS": "0"}
    logger.debug("running %s", " ".join(argv))
    try:
        completed = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError:
        raise InstallerError(f"{argv[0]} is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise InstallerError(
            f"`{' '.join(argv)}` did not answer within {timeout_s:.0f} s"
        ) from None
    result = Result(tuple(argv), completed.returncode, completed.stdout, completed.stderr)
    if check and not result.ok:
        raise InstallerError(f"`{' '.join(argv)}` failed: {result.first_error_line()}")
    return result
