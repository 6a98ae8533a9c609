"""One exception tree for the whole package.

Library code raises these; only the CLI turns them into one line of text and an exit code.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes, named so that services and scripts can rely on them."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    # EX_CONFIG from sysexits.h: a fatal configuration problem that a restart cannot fix.
    # The service units list it in RestartPreventExitStatus so that it does not loop.
    CONFIG = 78


# A service manager that cannot be told "do not restart on 78" (launchd) sets this to 0.
FATAL_EXIT_CODE_ENV = "GISKARD_FATAL_EXIT_CODE"


class GiskardError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILURE


class UsageError(GiskardError):
    """A command-line value is invalid."""

    exit_code = ExitCode.USAGE


class ConfigurationError(GiskardError):
    """A fatal configuration problem: retrying with the same settings cannot succeed."""

    exit_code = ExitCode.CONFIG


class ProtocolError(GiskardError):
    """The peer sent something the protocol does not allow, or speaks another version."""

    exit_code = ExitCode.CONFIG


class EncodingError(GiskardError):
    """A value cannot be turned into the safe data format (unsupported type or dtype)."""


class DecodingError(GiskardError):
    """Bytes claimed to be in the safe data format are malformed or of another format."""


class InstallerError(GiskardError):
    """Installing, starting, stopping or inspecting a worker service failed."""


class AlreadyRunningError(GiskardError):
    """A worker for the same environment and hub is already running."""

    exit_code = ExitCode.CONFIG


class KeyManagementError(GiskardError):
    """A key operation was refused: unknown or duplicate name, unknown role."""


class AuthenticationError(GiskardError):
    """The hub refused the API key (missing, rejected, revoked) or its role."""

    exit_code = ExitCode.CONFIG


class HubUnavailableError(GiskardError):
    """The hub cannot be reached."""


class NoWorkerError(GiskardError):
    """No worker is connected to the hub to run a job."""


class JobError(GiskardError):
    """A job failed in the worker; carries the remote exception's type, message and traceback."""

    def __init__(self, message: str, *, remote_type: str = "", remote_traceback: str = "") -> None:
        super().__init__(f"{remote_type}: {message}" if remote_type else message)
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = remote_traceback


class JobTimeoutError(JobError):
    """A job did not finish within its time limit; the worker stopped it."""


class JobCancelledError(JobError):
    """The job was cancelled; the worker stopped it."""


class WorkerNotFoundError(GiskardError):
    """No connected worker answers to the name given to a control command (or several do)."""
