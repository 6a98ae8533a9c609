"""`giskard hub ...`: run the platform-side hub and look at its workers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from giskard.cli.options import (
    API_KEY,
    API_KEY_FILE,
    CA_FILE,
    HOST,
    INSECURE,
    PORT,
    TLS,
    VERBOSE,
    warn_if_key_in_argv,
)

if TYPE_CHECKING:
    from giskard.client import HubClient
    from giskard.tls import ServerCertificate

hub_app = typer.Typer(
    rich_markup_mode=None,
    help="Run the hub (the platform side that workers connect to) and inspect it.",
    no_args_is_help=True,
)


@hub_app.command()
def start(
    host: str = typer.Option("127.0.0.1", "-h", "--host", help="Address to listen on."),
    port: int = PORT,
    verbose: bool = VERBOSE,
    tls_cert: str | None = typer.Option(None, "--tls-cert", help="Serve TLS: certificate (PEM)."),
    tls_key: str | None = typer.Option(None, "--tls-key", help="Serve TLS: its private key (PEM)."),
    tls_self_signed: bool = typer.Option(
        False, "--tls-self-signed", help="Serve TLS with a certificate the hub makes and keeps."
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Allow plaintext on a non-loopback address."
    ),
    routing: str = typer.Option(
        "latest",
        "--routing",
        help="latest: of the workers that may run a job, the latest connected gets it;"
        " spread: spread jobs over them (free slots, then cached inputs, then load).",
    ),
    reattach_grace: float = typer.Option(
        30.0,
        "--reattach-grace",
        min=0,
        metavar="SECONDS",
        help="How long the jobs of a worker whose connection dropped wait for it to come"
        " back (0: they fail at once as worker_lost).",
    ),
    compression: str = typer.Option(
        "auto",
        "--compression",
        help="Compress the inputs sent to workers (zstd): auto: only to workers not on this"
        " machine; on; off.",
    ),
    console_port: int | None = typer.Option(
        None,
        "--console-port",
        metavar="PORT",
        help="Serve the admin console (web pages, /metrics, /healthz) on this port of --host,"
        " with the hub's TLS. Default: 40052 when giskard-worker[hub] is installed.",
    ),
    no_console: bool = typer.Option(False, "--no-console", help="Serve no console."),
) -> None:
    """Run a hub in the foreground until Ctrl-C or SIGTERM.

    Without TLS it listens on loopback only, unless --insecure.
    """
    import asyncio
    import os
    import signal

    from giskard.address import HubAddress, validate_host

    host = validate_host(host)
    HubAddress(host, port)  # validates the port
    # Before grpc is imported: its core would print its own line for a port it cannot bind,
    # before ours. The hub says what fails itself; --verbose brings gRPC's lines back.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR" if verbose else "NONE")
    from giskard.hub import Hub
    from giskard.logs import configure_logging

    configure_logging(verbose=verbose)
    from giskard.hub.routing import POLICIES

    if routing not in POLICIES:
        raise typer.BadParameter(f"use {' or '.join(POLICIES)}", param_hint="--routing")
    from giskard.compression import SETTINGS

    if compression not in SETTINGS:
        raise typer.BadParameter(f"use {', '.join(SETTINGS)}", param_hint="--compression")
    console = _console_port(host, console_port, no_console)
    certificate = _server_certificate(host, tls_cert, tls_key, tls_self_signed)
    if certificate is not None:
        typer.echo(f"TLS certificate SHA-256 fingerprint: {certificate.fingerprint()}", err=True)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        hub = Hub(
            host,
            port,
            tls=certificate,
            insecure=insecure,
            routing=routing,
            reattach_grace_s=reattach_grace,
            compression=compression,
            console_port=console,
        )
        await hub.serve(stop)

    asyncio.run(serve())


def _console_port(host: str, port: int | None, no_console: bool) -> int | None:
    """The console's port; None: no console. Asked for by port, it must be installed."""
    from giskard.address import HubAddress
    from giskard.errors import ConfigurationError
    from giskard.hub.console import DEFAULT_CONSOLE_PORT, is_available

    if no_console:
        if port is not None:
            raise typer.BadParameter("not with --no-console", param_hint="--console-port")
        return None
    if port is None:
        return DEFAULT_CONSOLE_PORT  # the hub runs without it if it is not installed
    HubAddress(host, port)  # validates the port
    if not is_available():
        raise ConfigurationError(
            "the console needs its packages: pip install 'giskard-worker[hub]', or --no-console"
        )
    return port


@hub_app.command()
def console(
    host: str = typer.Option("127.0.0.1", "-h", "--host", help="Address of the console."),
    port: int | None = typer.Option(
        None, "-p", "--port", min=1, max=65535, help="Port of the hub's console [default: 40052]."
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the URL."),
    tls: bool = TLS,
    ca_file: str | None = CA_FILE,
) -> None:
    """Print (and open in a browser) a URL that logs the local admin in to the hub's console:
    good once, for a minute."""
    import webbrowser
    from pathlib import Path

    from giskard.hub.console import DEFAULT_CONSOLE_PORT
    from giskard.hub.console.login_url import one_time_login_url

    port = DEFAULT_CONSOLE_PORT if port is None else port
    url = one_time_login_url(host, port, tls=tls, ca_file=Path(ca_file) if ca_file else None)
    typer.echo(f"Open the console (this URL works once, within a minute):\n    {url}")
    if not no_browser and _has_browser():
        webbrowser.open(url)


def _has_browser() -> bool:
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


workers_app = typer.Typer(
    rich_markup_mode=None,
    help="Show the workers connected to a hub; pause, resume, drain or stop one (admin key).",
    invoke_without_command=True,
)
hub_app.add_typer(workers_app, name="workers")


@workers_app.callback()
def workers(
    ctx: typer.Context,
    host: str = HOST,
    port: int = PORT,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a summary."),
    api_key_file: str | None = API_KEY_FILE,
    api_key: str | None = API_KEY,
    tls: bool = TLS,
    ca_file: str | None = CA_FILE,
    insecure: bool = INSECURE,
) -> None:
    """Show the workers connected to a hub, the active one first, with their names, labels
    and running jobs, how many jobs wait in the hub's queue, and the last jobs that ended,
    with why."""
    if ctx.invoked_subcommand is not None:
        return
    with _client(host, port, api_key, api_key_file, tls, ca_file, insecure) as client:
        status = client.status()
    found = status["workers"]
    if as_json:
        typer.echo(json.dumps(status, indent=2))
        return
    if not found:
        typer.echo("No worker is connected.")
    for worker in found:
        typer.echo(_summary(worker))
        for job in worker["running"]:
            progress = f"  {job['done']}/{job['total']}" if job["total"] else ""
            state = "waiting" if job["waiting"] else "running"
            typer.echo(f"    {state} {job['kind']} {job['job_id'][:12]}{progress}")
    typer.echo(f"{status['queued']} job(s) queued.")
    _print_recent(status["recent"])


def _print_recent(recent: list[dict]) -> None:
    import datetime

    from giskard.display import printable

    shown = recent[-RECENT_SHOWN:]
    if shown:
        more = f", {len(recent) - len(shown)} more with --json" if len(recent) > len(shown) else ""
        typer.echo(f"Last {len(shown)} job(s) ended{more}:")
    for job in shown:
        ended = datetime.datetime.fromtimestamp(job["ended_at"]).isoformat(timespec="seconds")
        reason = job["reason"] or "unknown"
        detail = f" ({job['detail']})" if job["detail"] and job["detail"] != reason else ""
        worker = f" on {job['worker_id'][:8]}" if job["worker_id"] else ""
        line = (
            f"    {ended} {job['kind']} {job['job_id'][:12]}{worker}"
            f"  {job['duration_s']:.1f} s  {reason}{detail}"
        )
        typer.echo(printable(line))  # the detail is the worker's word


# The text summary shows the last ended jobs up to this many; --json shows all the hub keeps.
RECENT_SHOWN = 20


def _role(worker: dict) -> str:
    from giskard.hub.worker_states import worker_state

    return worker_state(worker).ljust(7)  # the states line up; "draining" is one wider


def _summary(worker: dict) -> str:
    import datetime

    from giskard.display import printable

    try:
        started = datetime.datetime.fromtimestamp(worker["started_at"]).isoformat(
            timespec="seconds"
        )
    except (ValueError, OverflowError, OSError):  # a worker's word, not to be trusted
        started = "?"
    role = _role(worker)
    labels = "".join(f" {key}={value}" for key, value in worker["labels"].items())
    text = (
        f"{role} pid {worker['pid']} on {worker['hostname']}  worker {worker['name']}{labels}"
        f"  Python {worker['python_version']}"
        f"  {worker['interpreter']}  giskard {worker['giskard_version']}"
        f"  {len(worker['packages'])} packages  started {started}"
        f"  {sum(not job['waiting'] for job in worker['running'])}/{worker['concurrency']}"
        " slots busy"
    )
    return printable(text)


WORKER_REF = typer.Argument(
    ..., help="The worker: its name, a prefix of its worker_id, or pid@hostname."
)


def _control_command(name: str, done: str, help_text: str) -> None:
    """`giskard hub workers NAME WORKER`: call HubClient.NAME_worker(WORKER)."""

    @workers_app.command(name, help=help_text)
    def command(
        worker: str = WORKER_REF,
        host: str = HOST,
        port: int = PORT,
        api_key_file: str | None = API_KEY_FILE,
        api_key: str | None = API_KEY,
        tls: bool = TLS,
        ca_file: str | None = CA_FILE,
        insecure: bool = INSECURE,
    ) -> None:
        with _client(host, port, api_key, api_key_file, tls, ca_file, insecure) as client:
            _done(done, getattr(client, f"{name}_worker")(worker))


_control_command("pause", "Paused", "Send a worker no new jobs until `resume`; it stays connected.")
_control_command("resume", "Resumed", "Send a paused worker jobs again.")
_control_command(
    "drain",
    "Draining",
    "Send a worker no new jobs; it finishes those it holds, then exits and stays stopped.",
)


@workers_app.command("stop")
def stop_worker(
    worker: str = WORKER_REF,
    force: bool = typer.Option(False, "--force", help="Cancel its running jobs at once."),
    host: str = HOST,
    port: int = PORT,
    api_key_file: str | None = API_KEY_FILE,
    api_key: str | None = API_KEY,
    tls: bool = TLS,
    ca_file: str | None = CA_FILE,
    insecure: bool = INSECURE,
) -> None:
    """Make a worker exit now, as on SIGTERM (its running jobs get a grace to end), and stay
    stopped."""
    with _client(host, port, api_key, api_key_file, tls, ca_file, insecure) as client:
        _done("Stopping", client.stop_worker(worker, force=force))


def _done(what: str, worker: dict) -> None:
    from giskard.display import printable

    typer.echo(printable(f"{what} worker pid {worker['pid']} on {worker['hostname']}."))


keys_app = typer.Typer(
    rich_markup_mode=None,
    help="Manage the hub's API keys (needs an admin key).",
    no_args_is_help=True,
)
hub_app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create_key(
    role: str = typer.Option(..., "--role", help="worker, client or admin."),
    name: str = typer.Option("", "--name", help="A name to revoke it by (default: made up)."),
    host: str = HOST,
    port: int = PORT,
    api_key_file: str | None = API_KEY_FILE,
    api_key: str | None = API_KEY,
    tls: bool = TLS,
    ca_file: str | None = CA_FILE,
    insecure: bool = INSECURE,
) -> None:
    """Create a key and print it, once: the hub keeps only its hash."""
    with _client(host, port, api_key, api_key_file, tls, ca_file, insecure) as client:
        info, key = client.create_key(role, name)
    typer.echo(key)
    typer.echo(
        f"Created the {info['role']} key {info['name']!r}. Keep it now: it is not shown again.",
        err=True,
    )


@keys_app.command("list")
def list_keys(
    host: str = HOST,
    port: int = PORT,
    api_key_file: str | None = API_KEY_FILE,
    api_key: str | None = API_KEY,
    tls: bool = TLS,
    ca_file: str | None = CA_FILE,
    insecure: bool = INSECURE,
) -> None:
    """List the keys: name, role, creation time, revoked or not (never the keys)."""
    import datetime

    with _client(host, port, api_key, api_key_file, tls, ca_file, insecure) as client:
        for info in client.list_keys():
            created = datetime.datetime.fromtimestamp(info["created_at"]).isoformat(
                timespec="seconds"
            )
            state = "revoked" if info["revoked"] else "active"
            typer.echo(f"{info['name']:28} {info['role']:7} {state:8} created {created}")


@keys_app.command("revoke")
def revoke_key(
    name: str = typer.Argument(..., help="The key's name (see `giskard hub keys list`)."),
    host: str = HOST,
    port: int = PORT,
    api_key_file: str | None = API_KEY_FILE,
    api_key: str | None = API_KEY,
    tls: bool = TLS,
    ca_file: str | None = CA_FILE,
    insecure: bool = INSECURE,
) -> None:
    """Revoke a key; the sessions and calls using it are closed at once."""
    with _client(host, port, api_key, api_key_file, tls, ca_file, insecure) as client:
        client.revoke_key(name)
    typer.echo(f"Revoked {name!r}.")


def _client(
    host: str,
    port: int,
    api_key: str | None,
    api_key_file: str | None,
    tls: bool,
    ca_file: str | None,
    insecure: bool,
) -> HubClient:
    from giskard.tls import quiet_grpc_logs

    quiet_grpc_logs()
    from giskard.address import HubAddress
    from giskard.client import HubClient

    address = HubAddress(host, port)
    warn_if_key_in_argv(api_key)
    # The options as given, not a key resolved here: HubClient must know a local admin key
    # for what it is, to send it over the private socket only.
    return HubClient(
        address.target,
        api_key=api_key,
        api_key_file=api_key_file,
        tls=tls,
        ca_file=ca_file,
        insecure=insecure,
    )


def _server_certificate(
    host: str, cert: str | None, key: str | None, self_signed: bool
) -> ServerCertificate | None:
    from pathlib import Path

    from giskard.credentials import hub_dir
    from giskard.errors import UsageError
    from giskard.tls import ServerCertificate
    from giskard.tls import self_signed as make_self_signed

    if self_signed and (cert or key):
        raise UsageError("--tls-self-signed contradicts --tls-cert/--tls-key: choose one")
    if bool(cert) != bool(key):
        raise UsageError("--tls-cert and --tls-key go together")
    if cert and key:
        return ServerCertificate(Path(cert), Path(key))
    return make_self_signed(hub_dir() / "tls", host) if self_signed else None
