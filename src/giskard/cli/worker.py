"""`giskard worker ...`: run the ML worker in the foreground or as a per-user service."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import typer

from giskard.address import HubAddress
from giskard.cli.options import (
    API_KEY,
    API_KEY_FILE,
    CA_FILE,
    HOST,
    INSECURE,
    PORT,
    SYSTEM,
    TLS,
    VERBOSE,
    WORKER_LABELS,
    WORKER_NAME,
    credentials_for,
)
from giskard.errors import FATAL_EXIT_CODE_ENV, ExitCode, GiskardError, UsageError

if TYPE_CHECKING:
    from giskard.worker.config import WorkerConfig

worker_app = typer.Typer(
    rich_markup_mode=None,
    help="Run the ML worker that executes the hub's jobs in this Python environment.",
    no_args_is_help=True,
)
logger = logging.getLogger("giskard.worker")


@worker_app.command()
def start(
    host: str = HOST,
    port: int = PORT,
    verbose: bool = VERBOSE,
    daemon: bool = typer.Option(
        False,
        "-d",
        "--daemon",
        help="Run as a per-user service (systemd, launchd, or a detached process) and return.",
    ),
    backend: str = typer.Option(
        "auto", "--backend", help="With -d: auto, systemd, launchd or process."
    ),
    enable_linger: bool = typer.Option(
        False,
        "--enable-linger",
        help="With -d under systemd: keep the worker running after logout.",
    ),
    system: bool = typer.Option(
        False,
        "--system",
        help="With -d, as root: a system-wide systemd service for fleets (needs --run-as).",
    ),
    run_as: str | None = typer.Option(
        None, "--run-as", help="With --system: the unprivileged user the worker runs as."
    ),
    api_key_file: str | None = API_KEY_FILE,
    api_key: str | None = API_KEY,
    tls: bool = TLS,
    ca_file: str | None = CA_FILE,
    insecure: bool = INSECURE,
    concurrency: int = typer.Option(
        1, "--concurrency", min=1, max=256, help="Jobs to run at once, each in its own process."
    ),
    max_job_memory: str | None = typer.Option(
        None,
        "--max-job-memory",
        help="Fail a job that allocates more than this (e.g. 4G); its process is replaced.",
    ),
    cache_size: str = typer.Option(
        "2G", "--cache-size", help="Memory for cached models and datasets (e.g. 512M, 8G)."
    ),
    name: str | None = WORKER_NAME,
    labels: list[str] | None = WORKER_LABELS,
    log_stderr: bool = typer.Option(True, "--log-stderr/--no-log-stderr", hidden=True),
) -> None:
    """Start a worker; it connects to the hub and runs its jobs.

    In the foreground, logs go to stderr and to $GISKARD_HOME/run/ml-worker.log
    (default ~/giskard-home). With -d, the OS runs it and keeps its logs.
    """
    _check_system_options(
        daemon=daemon, system=system, run_as=run_as, backend=backend, enable_linger=enable_linger
    )
    address = HubAddress(host, port)
    job_limits = _job_limits(concurrency, max_job_memory, cache_size)
    identity = _identity(name, labels)
    from giskard.tls import channel_security, quiet_grpc_logs

    quiet_grpc_logs()
    # The worker a service runs (in the foreground) may find its key in a systemd credential.
    credentials = credentials_for(
        address.host, api_key, api_key_file, service_credential=not daemon
    )
    security = channel_security(address.host, tls=tls, ca_file=ca_file, insecure=insecure)
    job_args = _job_args(concurrency, max_job_memory, cache_size) + _identity_args(name, labels)
    if system:
        from giskard.cli.service import start_system_daemon

        assert run_as is not None  # checked above
        start_system_daemon(address, credentials, security, run_as, verbose, job_args)
        return
    if daemon:
        from giskard.cli.service import start_daemon

        start_daemon(
            address,
            credentials,
            security,
            verbose=verbose,
            backend=backend,
            enable_linger=enable_linger,
            job_args=job_args,
        )
        return
    from giskard.worker.config import WorkerConfig

    config = WorkerConfig(
        address=address, credentials=credentials, security=security, **job_limits, **identity
    )
    _run_foreground(config, verbose=verbose, log_stderr=log_stderr)


def _check_system_options(
    *, daemon: bool, system: bool, run_as: str | None, backend: str, enable_linger: bool
) -> None:
    # --run-as is required: a system service that ran as root would give every job root.
    if system and not daemon:
        raise UsageError("--system installs a service: add -d")
    if system and not run_as:
        raise UsageError("--system needs --run-as USER, the unprivileged user the worker runs as")
    if run_as and not system:
        raise UsageError("--run-as is for the system-wide service: add --system (as root)")
    # The system-wide service is systemd's system manager, which has no linger: an option
    # of the per-user service would be ignored, so it is refused.
    if system and backend != "auto":
        raise UsageError("--backend is for a per-user service: --system is always systemd's")
    if system and enable_linger:
        raise UsageError("--enable-linger is for a per-user service: --system runs at boot")


def _job_limits(concurrency: int, max_job_memory: str | None, cache_size: str) -> dict[str, int]:
    from giskard.sizes import parse_size

    def size(text: str, option: str) -> int:
        try:
            return parse_size(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=option) from None

    memory = size(max_job_memory, "--max-job-memory") if max_job_memory else 0
    cache = size(cache_size, "--cache-size")
    return {"concurrency": concurrency, "max_job_memory": memory, "cache_bytes": cache}


def _identity(name: str | None, labels: list[str] | None) -> dict:
    """The worker's name (when given) and labels, checked: a bad one is a usage error."""
    from giskard.labels import check_name, parse_labels

    identity: dict = {}
    try:
        if name is not None:
            identity["name"] = check_name(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--name") from None
    try:
        identity["labels"] = tuple(parse_labels(labels or ()).items())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--label") from None
    return identity


def _identity_args(name: str | None, labels: list[str] | None) -> list[str]:
    """The same, for the service's command line; without --name the service's worker
    computes the same default name (same host, environment and $GISKARD_HOME)."""
    return ([f"--name={name}"] if name else []) + [f"--label={label}" for label in labels or ()]


def _job_args(concurrency: int, max_job_memory: str | None, cache_size: str) -> list[str]:
    """The same settings, for the service's command line."""
    args = [f"--concurrency={concurrency}", f"--cache-size={cache_size}"]
    return args + ([f"--max-job-memory={max_job_memory}"] if max_job_memory else [])


def _run_foreground(config: WorkerConfig, *, verbose: bool, log_stderr: bool) -> None:
    from giskard.logs import configure_logging
    from giskard.paths import worker_log_path

    configure_logging(verbose=verbose, log_file=worker_log_path(), to_stderr=log_stderr)

    from giskard.installer.supervisor import die_with_supervisor
    from giskard.instance import InstanceLock
    from giskard.worker import Worker
    from giskard.worker.sd_notify import notify

    die_with_supervisor()
    address = config.address
    lock = InstanceLock(address, config.name, dict(config.labels))
    try:
        lock.acquire()
        worker = Worker(config)

        def connected(active: bool) -> None:
            lock.set_connected(True)
            role = "active" if active else "standby"
            notify(f"STATUS=Connected to the Giskard server at {address} ({role})")

        def disconnected() -> None:
            lock.set_connected(False)
            notify(f"STATUS=Waiting for the Giskard server at {address}")

        worker.on_connected, worker.on_disconnected = connected, disconnected
        worker.on_paused = lock.set_paused
        worker.on_jobs = lambda running: lock.set_jobs(running, config.concurrency)
        # Ready once started, not once connected: a hub that is down must not fail the start.
        notify("READY=1", f"STATUS=Connecting to the Giskard server at {address}")
        worker.run()
        if worker.stop_reason:
            lock.record_stop(worker.stop_reason)
        notify("STOPPING=1")
    except GiskardError as exc:
        # Fatal: say it in the log too, where a service's user will look for it.
        logger.error("%s", exc)
        exit_code = int(exc.exit_code)
        if exit_code == ExitCode.CONFIG and os.environ.get(FATAL_EXIT_CODE_ENV, "").isdigit():
            exit_code = int(os.environ[FATAL_EXIT_CODE_ENV])
        raise typer.Exit(exit_code) from None
    finally:
        lock.release()


@worker_app.command()
def stop(
    host: str = HOST,
    port: int = PORT,
    all_workers: bool = typer.Option(
        False, "-a", "--all", help="Stop every worker of this user, on every backend."
    ),
    system: bool = SYSTEM,
) -> None:
    """Stop the worker service started with `start -d` (same -h/-p), and remove it."""
    from giskard.installer.service import stop_all, stop_service

    address = HubAddress(host, port)
    if system:
        from giskard.installer.system import stop_system_service

        stopped = stop_system_service(None if all_workers else address)
    else:
        stopped = stop_all() if all_workers else stop_service(address)
    for what in stopped:
        typer.echo(f"Stopped {what}.")
    if not stopped:
        scope = "No worker" if all_workers else f"No worker service for {address}"
        typer.echo(f"{scope} is running; nothing to stop.")


@worker_app.command()
def restart(host: str = HOST, port: int = PORT, system: bool = SYSTEM) -> None:
    """Restart the worker service for this hub."""
    from giskard.installer.service import restart_service

    typer.echo(f"Restarted {restart_service(HubAddress(host, port), system=system)}.")


@worker_app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    system: bool = SYSTEM,
) -> None:
    """Show every worker of this user, managed by a service or not: backend, name, hub,
    interpreter, state, connection. With --system: the system-wide service's instances."""
    from giskard.cli.service import print_status

    print_status(as_json=as_json, system=system)


@worker_app.command()
def logs(
    host: str = HOST,
    port: int = PORT,
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
    lines: int = typer.Option(50, "-n", "--lines", min=1, help="How many lines to show."),
    system: bool = SYSTEM,
) -> None:
    """Show the logs of the worker service for this hub."""
    from giskard.installer.naming import service_name
    from giskard.installer.service import find_backend

    address = HubAddress(host, port)
    backend, name = find_backend(address, system=system), service_name(address)
    if follow:
        raise typer.Exit(backend.follow_logs(name, lines))
    for line in backend.log_lines(name, lines):
        typer.echo(line)


@worker_app.command()
def upgrade(
    host: str = HOST,
    port: int = PORT,
    system: bool = SYSTEM,
    requirement: str = typer.Option(
        "giskard-worker",
        "--requirement",
        help="What pip installs: a requirement (giskard-worker==1.2) or a wheel's path.",
    ),
) -> None:
    """Upgrade the worker service for this hub in its own Python environment: stop it (it
    drains; under launchd it keeps running), `pip install -U` there, start it again if it
    was running; a failed install leaves the version it ran."""
    from giskard.installer.upgrade import upgrade_service

    report = upgrade_service(HubAddress(host, port), requirement, system=system)
    if report.old == report.new:
        typer.echo(f"{report.service}: {report.new}, unchanged (pip found nothing newer).")
    else:
        typer.echo(f"Upgraded {report.service}: {report.old} -> {report.new}.")
    if not report.restarted:
        typer.echo(f"{report.service} was not running: it is left stopped.")
