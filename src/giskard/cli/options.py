"""Options shared by several commands, so that they read the same everywhere."""

from __future__ import annotations

import typer

from giskard.address import DEFAULT_HOST, DEFAULT_PORT

HOST = typer.Option(DEFAULT_HOST, "-h", "--host", help="Host of the Giskard hub.")
PORT = typer.Option(DEFAULT_PORT, "-p", "--port", min=1, max=65535, help="Port of the Giskard hub.")
VERBOSE = typer.Option(False, "-v", "--verbose", help="Log debug messages too.")
