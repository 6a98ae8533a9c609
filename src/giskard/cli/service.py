"""Output of the service commands: what a user needs to read after `-d` and `status`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import typer

from giskard.address import HubAddress
from giskard.credentials import Credentials
from giskard.installer.base import Action
from giskard.tls import ChannelSecurity

if TYPE_CHECKING:
    from giskard.installer.service import WorkerStatus
    from giskard.instance import StopRecord


def start_daemon(
    address: HubAddress,
    credentials: Credentials,
    security: ChannelSecurity,
    *,
    verbose: bool,
    backend: str,
    enable_linger: bool,
    job_args: list[str],
) -> None:
    from giskard.installer.service import start_service

    with _last_lines_on_failure():
        report = start_service(
            address,
            credentials,
            security,
            verbose=verbose,
            backend=backend,
            enable_linger=enable_linger,
            job_args=job_args,
        )
    spec, outcome = report.spec, report.outcome
    why = f" (no service manager: {report.fallback_reason})" if report.fallback_reason else ""
    typer.echo(f"Backend: {report.backend.name}{why}")
    if report.backend.name == "process":
        typer.echo("  A detached process: it does not start at boot and ends with this machine.")
    for orphan in report.stopped_orphans:
        typer.echo(
            f"Stopped an orphaned worker of {spec.name}, pid {orphan} (its manager was gone)."
        )
    pid = f", pid {outcome.pid}" if outcome.pid else ""
    typer.echo(f"Service {spec.name}: {outcome.action.value}{pid}")
    if outcome.action is Action.REBOUND:
        typer.echo(f"  It ran {outcome.previous_interpreter}; now {spec.interpreter}.")
    if report.connected:
        typer.echo(f"Connected to the Giskard server at {address}.")
    else:
        typer.echo(f"Running, waiting for the Giskard server at {address}.")
    if report.backend.name == "systemd" and report.linger is None:
        typer.echo("Note: could not check linger (logind did not answer).", err=True)
    if report.linger == "no":
        typer.echo(
            "Warning: linger is off, so the worker stops when you log out. To keep it running:"
            " loginctl enable-linger $USER (or start with --enable-linger)",
            err=True,
        )
    typer.echo(f"Logs: {report.backend.logs_hint(spec.name)}")
    typer.echo(f"Stop: giskard worker stop{spec.stop_args()}")


def start_system_daemon(
    address: HubAddress,
    credentials: Credentials,
    security: ChannelSecurity,
    run_as: str,
    verbose: bool,
    job_args: list[str],
) -> None:
    from giskard.installer.system import start_system_service

    with _last_lines_on_failure():
        report = start_system_service(
            address, credentials, security, run_as=run_as, verbose=verbose, job_args=tuple(job_args)
        )
    backend, spec, outcome = report.backend, report.spec, report.outcome
    pid = f", pid {outcome.pid}" if outcome.pid else ""
    typer.echo("Backend: systemd, system-wide")
    typer.echo(f"Service {backend.unit(spec.name)}: {outcome.action.value}{pid}")
    if outcome.also_restarted:
        restarted = ", ".join(outcome.also_restarted)
        typer.echo(f"  Its template changed: restarted the other running instances, {restarted}")
    if outcome.restart_failures:
        failures = "; ".join(outcome.restart_failures)
        typer.echo(f"Warning: its template changed, but {failures}", err=True)
    typer.echo(f"  Runs {spec.interpreter} as {spec.run_as}, for the hub at {address}.")
    typer.echo(f"  Its API key: {backend.key_path(spec.name)} (root only, via LoadCredential=)")
    typer.echo(f"Logs: {backend.logs_hint(spec.name)}")
    typer.echo(f"Stop: giskard worker stop --system{spec.stop_args()}")


@contextlib.contextmanager
def _last_lines_on_failure() -> Iterator[None]:
    """A service that did not start: show its last log lines before the error line."""
    from giskard.installer.systemd import ServiceFailedError

    try:
        yield
    except ServiceFailedError as exc:
        typer.echo("Last log lines:", err=True)
        for line in exc.log_lines:
            typer.echo(f"  {line}", err=True)
        raise


def print_status(*, as_json: bool, system: bool = False) -> None:
    """Every worker of this user; with `system`, every instance of the system service."""
    from giskard.installer.service import statuses
    from giskard.installer.system import system_statuses
    from giskard.instance import stop_records

    found = system_statuses() if system else statuses()
    reasons, stopped = _match_stops(found, [] if system else stop_records())
    if as_json:
        rows = [
            {
                **dataclasses.asdict(s.service),
                "connected": s.connected,
                "linger": s.linger,
                "running_jobs": s.jobs[0] if s.jobs else None,
                "concurrency": s.jobs[1] if s.jobs else None,
                "paused": s.paused,
                "stop_reason": reasons.get(s.service.name),
                "worker_name": s.worker.name if s.worker else None,
                "labels": s.worker.labels if s.worker else None,
            }
            for s in found
        ]
        rows += [{**dataclasses.asdict(record), "state": "stopped"} for record in stopped]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not found and not stopped:
        typer.echo("No worker is running or installed.")
    for status in found:
        service = status.service
        connected = {True: "connected", False: "not connected", None: "-"}[status.connected]
        reason = reasons.get(service.name)
        typer.echo(
            f"{service.backend:10} {service.name:30} {service.state:10} pid {service.pid or '-'}"
            f"  since {_when(service.since)}  {connected}  hub {service.hub or '-'}"
            f"  {service.interpreter or '-'}"
            + _identity(status)
            + (f"  jobs {status.jobs[0]}/{status.jobs[1]} running" if status.jobs else "")
            + ("  paused by the hub" if status.paused else "")
            + (f"  linger {status.linger}" if status.linger else "")
            + (f"  ({service.detail})" if service.detail else "")
            + (f"  stopped: {reason}" if reason else "")
        )
    for record in stopped:
        typer.echo(
            f"{'-':10} {record.service or '-':30} {'stopped':10} pid {record.pid}"
            f"  since {_when(record.stopped_at)}  hub {record.hub}  {record.interpreter}"
            f"  stopped: {record.reason}"
        )


def _match_stops(
    found: list[WorkerStatus], records: list[StopRecord]
) -> tuple[dict[str, str], list[StopRecord]]:
    """Why each service that is not running stopped (by service name, the latest stop), and
    the stops of workers no service row shows (run in the foreground, or since removed)."""
    idle = {status.service.name for status in found if not status.service.running}
    reasons: dict[str, str] = {}
    others: list[StopRecord] = []
    for record in records:  # oldest first: the latest stop of a service wins
        if record.service and record.service in idle:
            reasons[record.service] = f"{record.reason} at {_when(record.stopped_at)}"
        else:
            others.append(record)
    return reasons, others


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"


def _identity(status: WorkerStatus) -> str:
    worker = status.worker
    if worker is None or not worker.name:
        return ""
    labels = ",".join(f"{key}={value}" for key, value in worker.labels.items())
    return f"  worker {worker.name}" + (f" [{labels}]" if labels else "")
