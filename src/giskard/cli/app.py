"""The root `giskard` app: one sub-app per noun."""

from __future__ import annotations

import typer

from giskard import __version__
from giskard.cli.hub import hub_app
from giskard.cli.worker import worker_app

# `-h` is the host everywhere (as in `giskard worker start -h HOST`), so help is --help only.
CONTEXT_SETTINGS = {"help_option_names": ["--help"]}

app = typer.Typer(
    rich_markup_mode=None,
    name="giskard",
    help="Giskard ML worker: run an ML platform's jobs in your own Python environment.",
    context_settings=CONTEXT_SETTINGS,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(worker_app, name="worker")
app.add_typer(hub_app, name="hub")


def _print_version(value: bool) -> None:
    if value:
        typer.echo("\n".join(version_lines()))
        raise typer.Exit()


def version_lines() -> list[str]:
    """What `giskard --version` prints: what a bug report needs to say which worker it was."""
    import platform
    import sys

    from giskard.protocol import PROTOCOL_VERSION

    python = f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})"
    return [f"giskard-worker {__version__}", f"protocol {PROTOCOL_VERSION}", f"Python {python}"]


@app.callback()
def root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the versions of giskard-worker, its protocol and Python.",
    ),
) -> None:
    """Giskard ML worker: run an ML platform's jobs in your own Python environment."""
