"""One exception tree for the whole package.

Library code raises these; only the CLI turns them into one line of text and an exit code.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from giskard.compat import Difference


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


class EndReason(enum.StrEnum):
    """Why a job ended: one closed set, shared by the hub, the worker and the client (the wire
    form is the protocol's EndReason enum, see giskard.end_reasons)."""

    SUCCEEDED = "succeeded"
    MODEL_ERROR = "model_error"  # the job's code raised, or returned what cannot go back
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"  # by its client, or because the client left or stopped reading
    WORKER_LOST = "worker_lost"  # its worker left, or could not run it
    EXECUTOR_CRASHED = "executor_crashed"  # the process running it died
    MEMORY_LIMIT = "memory_limit"  # beyond the worker's --max-job-memory
    DRAINED = "drained"  # its worker was stopped before it could finish it
    INCOMPATIBLE_ENVIRONMENT = "incompatible_environment"  # no worker can load it
    NO_WORKER = "no_worker"  # no worker came to run it


class JobError(GiskardError):
    """A job failed; carries why (`reason`), the remote exception's type, message and
    traceback, and the last part of what the job wrote (`logs`)."""

    reason: EndReason = EndReason.MODEL_ERROR

    def __init__(
        self,
        message: str,
        *,
        remote_type: str = "",
        remote_traceback: str = "",
        logs: str = "",
    ) -> None:
        super().__init__(f"{remote_type}: {message}" if remote_type else message)
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = remote_traceback
        self.logs = logs


class JobTimeoutError(JobError):
    """A job did not finish within its time limit; the worker stopped it."""

    reason = EndReason.TIMEOUT


class JobCancelledError(JobError):
    """The job was cancelled; the worker stopped it."""

    reason = EndReason.CANCELLED


class WorkerLostError(JobError):
    """The worker running the job left (or could not run it) before the job ended."""

    reason = EndReason.WORKER_LOST


class ExecutorCrashedError(JobError):
    """The process running the job died: `signal` is the signal that killed it (None if it
    exited)."""

    reason = EndReason.EXECUTOR_CRASHED

    def __init__(self, message: str, *, signal: int | None = None, **fields: str) -> None:
        super().__init__(message, **fields)
        self.signal = signal


class MemoryLimitError(JobError):
    """The job needed more memory than its worker allows (`--max-job-memory`)."""

    reason = EndReason.MEMORY_LIMIT


class DrainedError(JobError):
    """The job's worker was stopped (drained) before it could finish the job."""

    reason = EndReason.DRAINED


class IncompatibleEnvironmentError(JobError):
    """No worker's environment can load what the job needs; `differences` lists why
    (giskard.compat.Difference: per worker, what differs and whether it blocks loading)."""

    reason = EndReason.INCOMPATIBLE_ENVIRONMENT

    def __init__(self, message: str, **fields: str) -> None:
        super().__init__(message, **fields)
        self.differences: list[Difference] = []


class WorkerNotFoundError(GiskardError):
    """No connected worker answers to the name given to a control command (or several do)."""
