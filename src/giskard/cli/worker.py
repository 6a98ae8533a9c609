"""`giskard worker ...`: run the ML worker."""

from __future__ import annotations

import logging

import typer

from giskard.cli.options import HOST, PORT, VERBOSE
from giskard.errors import GiskardError

worker_app = typer.Typer(
    help="Run the ML worker that executes the hub's jobs in this Python environment.",
    no_args_is_help=True,
)
logger = logging.getLogger("giskard.worker")


@worker_app.command()
def start(host: str = HOST, port: int = PORT, verbose: bool = VERBOSE) -> None:
    """Start a worker in the foreground; it connects to the hub and runs its jobs.

    Logs go to stderr and to $GISKARD_HOME/run/ml-worker.log (default ~/giskard-home).
    """
    from giskard.address import HubAddress
    from giskard.logs import configure_logging
    from giskard.paths import worker_log_path

    address = HubAddress(host, port)
    configure_logging(verbose=verbose, log_file=worker_log_path())

    from giskard.worker import Worker, WorkerConfig

    try:
        Worker(WorkerConfig(address=address)).run()
    except GiskardError as exc:
        # Fatal: say it in the log too, where a service's user will look for it.
        logger.error("%s", exc)
        raise typer.Exit(int(exc.exit_code)) from None
