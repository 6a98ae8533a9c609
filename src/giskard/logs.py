"""Logging setup, applied by the CLI (never at import time)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from giskard.errors import ConfigurationError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Under journald: it adds the time itself, and reads the priority from a <N> prefix.
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
# The log file is bounded: 5 files of at most 10 MB each.
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 4

_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """Prefixes every physical line with <N> so journald stores it at that priority."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def stderr_is_journal() -> bool:
    """Whether stderr is connected to journald ($JOURNAL_STREAM names its device:inode)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        stat = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{stat.st_dev}:{stat.st_ino}"


def _file_handler(log_file: Path) -> logging.Handler:
    """The size-bounded handler of `log_file`; a log that cannot be written is a fatal
    configuration problem (a read-only home, a directory in its place), not a crash."""
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        return logging.handlers.RotatingFileHandler(
            log_file, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
        )
    except OSError as exc:
        where = "" if exc.filename in (None, str(log_file)) else f" ({exc.filename})"
        raise ConfigurationError(
            f"cannot write the log file {log_file}: {exc.strerror}{where}"
        ) from None


def configure_logging(
    *, verbose: bool = False, log_file: Path | None = None, to_stderr: bool = True
) -> None:
    """Log to stderr (journald-aware) and, when given, to a size-bounded file."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    if to_stderr:
        stderr_handler = logging.StreamHandler(sys.stderr)
        journal = stderr_is_journal()
        stderr_handler.setFormatter(
            JournalFormatter() if journal else logging.Formatter(LOG_FORMAT)
        )
        root.addHandler(stderr_handler)
    if log_file is not None:
        file_handler = _file_handler(log_file)
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(file_handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # grpc's own loggers are noisy at DEBUG and say nothing a user can act on at INFO.
    logging.getLogger("grpc").setLevel(logging.WARNING)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
