"""`giskard hub ...`: run the platform-side hub and look at its workers."""

from __future__ import annotations

import json

import typer

from giskard.cli.options import HOST, PORT, VERBOSE

hub_app = typer.Typer(
    help="Run the hub (the platform side that workers connect to) and inspect it.",
    no_args_is_help=True,
)


@hub_app.command()
def start(
    host: str = typer.Option("127.0.0.1", "-h", "--host", help="Address to listen on."),
    port: int = PORT,
    verbose: bool = VERBOSE,
) -> None:
    """Run a hub in the foreground until Ctrl-C or SIGTERM."""
    import asyncio
    import signal

    from giskard.address import HubAddress
    from giskard.hub import Hub
    from giskard.logs import configure_logging

    HubAddress(host, port)  # validates
    configure_logging(verbose=verbose)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await Hub(host, port).serve(stop)

    asyncio.run(serve())


@hub_app.command()
def workers(
    host: str = HOST,
    port: int = PORT,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a summary."),
) -> None:
    """Show the workers connected to a hub, the active one first."""
    from giskard.address import HubAddress
    from giskard.client import HubClient

    with HubClient(HubAddress(host, port).target) as client:
        found = client.workers()
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    if not found:
        typer.echo("No worker is connected.")
    for worker in found:
        typer.echo(_summary(worker))


def _summary(worker: dict) -> str:
    import datetime

    started = datetime.datetime.fromtimestamp(worker["started_at"]).isoformat(timespec="seconds")
    role = "active " if worker["active"] else "standby"
    return (
        f"{role} pid {worker['pid']} on {worker['hostname']}  Python {worker['python_version']}"
        f"  {worker['interpreter']}  giskard {worker['giskard_version']}"
        f"  {len(worker['packages'])} packages  started {started}"
    )
