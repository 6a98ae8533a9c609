"""The `giskard` command. Kept cheap to import: commands import heavy modules themselves."""

from __future__ import annotations

import os
import sys

from giskard.errors import ExitCode, GiskardError

PROG_NAME = "giskard"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command; turn every error into one line and an exit code."""
    from typer.main import get_command

    from giskard.cli.app import app

    command = get_command(app)
    try:
        code = command.main(args=argv, prog_name=PROG_NAME, standalone_mode=False)
    except GiskardError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", ExitCode.FAILURE)
    except Exception as exc:
        _fail_unexpected(exc)
    sys.exit(code if isinstance(code, int) else ExitCode.OK)


def _fail(message: str, code: int) -> None:
    print(f"{PROG_NAME}: error: {message}", file=sys.stderr)
    sys.exit(code)


def _fail_unexpected(exc: Exception) -> None:
    # Command-line parsing errors (typer's vendored click) carry their own text and code.
    if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
        _fail(f"{exc.format_message()} (see --help)", exc.exit_code)
    if type(exc).__name__ == "Abort":
        _fail("aborted", ExitCode.FAILURE)
    if os.environ.get("GISKARD_DEBUG"):
        raise exc
    _fail(f"unexpected {type(exc).__name__}: {exc} (set GISKARD_DEBUG=1 for details)", 1)
