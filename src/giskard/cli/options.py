"""Options shared by several commands, so that they read the same everywhere."""

from __future__ import annotations

import typer

from giskard.address import DEFAULT_HOST, DEFAULT_PORT
from giskard.credentials import Credentials, resolve

HOST = typer.Option(DEFAULT_HOST, "-h", "--host", help="Host of the Giskard hub.")
PORT = typer.Option(DEFAULT_PORT, "-p", "--port", min=1, max=65535, help="Port of the Giskard hub.")
VERBOSE = typer.Option(False, "-v", "--verbose", help="Log debug messages too.")
API_KEY_FILE = typer.Option(
    None, "--api-key-file", help="Read the hub's API key from this file (else $GISKARD_API_KEY)."
)
API_KEY = typer.Option(
    None,
    "--api-key",
    help="The API key itself; other users can read it in the process list: prefer the file.",
)


def credentials_for(
    host: str, api_key: str | None, api_key_file: str | None, *, service_credential: bool = False
) -> Credentials:
    """The key to present, warning when it was given on the command line."""
    warn_if_key_in_argv(api_key)
    return resolve(
        host, api_key=api_key, api_key_file=api_key_file, service_credential=service_credential
    )


def warn_if_key_in_argv(api_key: str | None) -> None:
    if api_key:
        typer.echo(
            "Warning: an API key given with --api-key is visible to other users of this machine"
            " (process list); prefer $GISKARD_API_KEY or --api-key-file.",
            err=True,
        )


TLS = typer.Option(False, "--tls", help="Use TLS even to a hub on this machine.")
CA_FILE = typer.Option(
    None, "--ca-file", help="Verify the hub against this PEM (its CA or its own certificate)."
)
INSECURE = typer.Option(
    False, "--insecure", help="Plaintext to a hub on another machine (keys and data unencrypted)."
)
WORKER_NAME = typer.Option(
    None,
    "--name",
    help="The worker's name, unique on the hub (default: from the host and environment).",
)
WORKER_LABELS = typer.Option(
    None, "--label", help="KEY=VALUE that jobs may ask for (repeatable), e.g. gpu=a100."
)
SYSTEM = typer.Option(
    False,
    "--system",
    help="The system-wide service (systemd, as root) instead of this user's.",
)
