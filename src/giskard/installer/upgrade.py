"""`giskard worker upgrade`: a new giskard-worker in a service's own environment.

The service is stopped first (its worker drains), so that pip never replaces the files of
a running worker, and started again whatever happened meanwhile: a failed install leaves
the version that ran, and it runs again. A service that was not running (its
administrator stopped it) is left stopped. Stopping first is systemd's and the detached
process's; under launchd the worker keeps running while pip runs, and is restarted after.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from giskard.address import HubAddress
from giskard.errors import InstallerError
from giskard.installer.base import Backend
from giskard.installer.commands import Result, run_tool
from giskard.installer.naming import service_name
from giskard.installer.service import find_backend

# pip may build or download large wheels (numpy, torch) when the new version needs them.
PIP_TIMEOUT_S = 900.0
_VERSION_CODE = "import giskard; print(giskard.__version__)"
# Run from /, never with the directory it runs in on sys.path (`python -m` puts it first:
# a pip.py there would run, as root for the system service). As root, isolated too (-I: no
# PYTHON* variables, no user's site-packages): only the environment's own files run. A
# per-user service may run from the user's own site-packages, which -P keeps.
_ROOTS_FLAGS = ("-I",)
_USERS_FLAGS = ("-P",)
_NEUTRAL_CWD = "/"


@dataclass(frozen=True)
class UpgradeReport:
    service: str
    old: str
    new: str
    restarted: bool  # False: it was not running, and is left stopped


def upgrade_service(
    address: HubAddress, requirement: str, *, system: bool = False
) -> UpgradeReport:
    """Upgrade the service for `address` to what pip installs for `requirement` (a
    requirement or a wheel's path), in the interpreter the service runs."""
    name = service_name(address)
    backend = find_backend(address, system=system)
    status = backend.status(name)
    interpreter = status.interpreter if status else None
    if not interpreter:
        raise InstallerError(f"cannot tell which Python the service {name} runs")
    if system:  # what follows runs the service's environment as root
        from giskard.installer.system import check_root_may_run

        check_root_may_run(interpreter)
    flags = _ROOTS_FLAGS if system else _USERS_FLAGS
    old = installed_version(interpreter, flags)
    # A service restarting after a failure counts as running: nobody stopped it.
    was_running = status is not None and status.state in ("running", "activating")
    failure: str | None = None
    try:
        failure = _halt_and_install(backend, name, [interpreter, *flags], _absolute(requirement))
    finally:  # whatever happened, Ctrl-C included, a running service runs again
        restart_failure = _restart(backend, name) if was_running else None
    if restart_failure:
        done = failure or f"pip installed {requirement}"
        raise InstallerError(f"{done}, but {restart_failure}")
    if failure:
        after = f"runs giskard-worker {old} again" if was_running else "stays stopped"
        raise InstallerError(f"{failure} ({name} {after})")
    return UpgradeReport(name, old, installed_version(interpreter, flags), restarted=was_running)


def _halt_and_install(
    backend: Backend, name: str, python: list[str], requirement: str
) -> str | None:
    """Stop the service and run pip; what went wrong, or None. A service that does not
    stop is not installed over."""
    try:
        backend.halt(name)
        pip = run_tool(
            [*python, "-m", "pip", "install", "--upgrade", requirement],
            timeout_s=PIP_TIMEOUT_S,
            cwd=_NEUTRAL_CWD,
        )
    except InstallerError as exc:  # the stop failed, or pip did not answer in time
        return str(exc)
    return None if pip.ok else f"pip could not install {requirement}: {_pip_error(pip)}"


def _restart(backend: Backend, name: str) -> str | None:
    """Start the service again; what went wrong, or None. Any failure is said, never
    raised: it must not hide what pip did."""
    try:
        backend.restart(name)
    except Exception as exc:  # whatever failed is said along with what pip did
        return str(exc) or type(exc).__name__
    return None


def installed_version(interpreter: str, flags: tuple[str, ...]) -> str:
    """The giskard version `interpreter` imports, run with `flags`."""
    result = run_tool([interpreter, *flags, "-c", _VERSION_CODE], timeout_s=60, cwd=_NEUTRAL_CWD)
    if not result.ok:
        raise InstallerError(f"{interpreter} cannot import giskard: {result.first_error_line()}")
    return result.stdout.strip()


def _absolute(requirement: str) -> str:
    """A wheel's path as pip will find it from /; a requirement as it is."""
    return os.path.abspath(requirement) if os.path.exists(requirement) else requirement


def _pip_error(result: Result) -> str:
    """pip's own error line: its last line starting with ERROR, else its last line."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    return errors[-1].removeprefix("ERROR:").strip() if errors else result.first_error_line()
