"""The hub: a gRPC server for workers and clients, in the foreground or in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import grpc

from giskard.address import DEFAULT_PORT, HubAddress, validate_host
from giskard.compression import AUTO, SETTINGS
from giskard.credentials import hub_dir, is_loopback, local_admin_key_path
from giskard.errors import ConfigurationError, GiskardError, UsageError
from giskard.hub.admin_service import AdminService
from giskard.hub.artifacts import DEFAULT_MAX_BYTES, ArtifactStore
from giskard.hub.auth import Authenticator
from giskard.hub.console.sessions import LOGIN_ONCE_TTL_S
from giskard.hub.decoding import DecodingServer
from giskard.hub.job_events import UNREAD_RESULTS_MAX_BYTES, UnreadResults
from giskard.hub.jobs import REATTACH_GRACE_S, JobBoard
from giskard.hub.keys import KeyStore, ensure_local_admin_key
from giskard.hub.local_socket import LocalSocket
from giskard.hub.platform_service import PlatformService
from giskard.hub.registry import WorkerRegistry
from giskard.hub.routing import LATEST, POLICIES
from giskard.hub.worker_service import WorkerHubService
from giskard.protocol import SERVER_OPTIONS
from giskard.rpc.v1 import admin_pb2_grpc, client_pb2_grpc, worker_pb2_grpc
from giskard.tls import ServerCertificate

if TYPE_CHECKING:  # the console's packages are optional: imported only when it is on
    from starlette.applications import Starlette

    from giskard.hub.console.serving import ConsoleServer

logger = logging.getLogger(__name__)

STOP_GRACE_S = 2.0
REVOCATION_CHECK_S = 5.0


class Hub:
    """The platform side of the protocol.

    `with Hub(port=0) as hub:` runs it in a background thread (tests, notebooks);
    `await hub.serve(stop_event)` runs it on the caller's event loop (the CLI).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        home: Path | None = None,
        tls: ServerCertificate | None = None,
        insecure: bool = False,
        max_artifact_bytes: int = DEFAULT_MAX_BYTES,
        max_unread_result_bytes: int = UNREAD_RESULTS_MAX_BYTES,
        routing: str = LATEST,
        reattach_grace_s: float = REATTACH_GRACE_S,
        compression: str = AUTO,
        console_port: int | None = None,
        console_login_once_s: float = LOGIN_ONCE_TTL_S,
    ) -> None:
        """`tls`: serve TLS with this certificate. Without it, a hub may listen only on
        loopback, unless `insecure`. `max_unread_result_bytes`: what the hub holds of
        results their clients have not read yet, all jobs together (see UnreadResults).
        `routing`: "latest" (the latest connected worker that may run a job gets it) or
        "spread" (over every worker that may run it; see hub.routing). `reattach_grace_s`:
        how long the jobs of a worker whose connection dropped wait for it to reconnect and
        reattach them, before they fail as worker lost (0: at once). `compression`: "auto"
        (the inputs sent to workers not on this machine are zstd-compressed where they
        shrink), "on" (to every worker) or "off"; see giskard.compression. `console_port`:
        serve the admin console (giskard.hub.console) on this port of `host` too (0: a free
        one), with the same TLS; None: no console. `console_login_once_s`: how long a one-time
        login URL (`giskard hub console`) may be used."""
        if routing not in POLICIES:
            raise UsageError(f"unknown routing {routing!r}: use {' or '.join(POLICIES)}")
        if compression not in SETTINGS:
            raise UsageError(f"unknown compression {compression!r}: use {', '.join(SETTINGS)}")
        host = validate_host(host)
        if tls is None and not insecure and not is_loopback(host):
            raise ConfigurationError(
                f"listening on {host} without TLS exposes keys and data: give a certificate"
                " (--tls-cert/--tls-key or --tls-self-signed), or --insecure"
            )
        self.host = host
        self.port = port
        self.home = home
        self.tls = tls
        self.admin_key = ""  # the local admin key, known once serving
        self.registry: WorkerRegistry | None = None  # the connected workers, once serving
        self._max_artifact_bytes = max_artifact_bytes
        self.routing = routing
        self.reattach_grace_s = reattach_grace_s
        self.compression = compression
        self.console_port = console_port  # the real port once serving; None: no console
        self.console_login_once_s = console_login_once_s
        self._jobs: JobBoard | None = None
        self._keys: KeyStore | None = None
        self._store: ArtifactStore | None = None
        self._platform: PlatformService | None = None
        self.unread_results = UnreadResults(max_unread_result_bytes)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def address(self) -> str:
        """`host:port` to give a worker or a client (the real port when started with 0)."""
        return HubAddress(self.host, self.port).target

    @property
    def job_streams_opened(self) -> int:
        """How many Jobs streams clients opened since the hub started (one per HubClient,
        unless its stream broke)."""
        return 0 if self._platform is None else self._platform.streams_opened

    async def serve(self, stop: asyncio.Event, started: threading.Event | None = None) -> None:
        """Serve until `stop` is set, then stop cleanly."""
        server = grpc.aio.server(options=SERVER_OPTIONS)
        # Listen first: a hub that cannot have its port or its socket changes nothing on disk.
        self.port = self._bind(server)
        local_socket: LocalSocket | None = None
        console: ConsoleServer | None = None
        try:
            console = self._bind_console()
            local_socket = self._bind_local_socket(server)
            auth = self._add_services(server)
            await server.start()
            if console is not None:
                await console.start(self._console_app(console, auth))
        except BaseException as exc:
            await _close(server, local_socket, console, grace_s=None)
            if isinstance(exc, OSError):  # its files: a read-only home, a file for a directory
                where = exc.filename or hub_dir(self.home)
                raise ConfigurationError(f"the hub cannot use {where}: {exc.strerror}") from None
            raise
        security = f"TLS, certificate SHA-256 {self.tls.fingerprint()}" if self.tls else "plaintext"
        logger.info("Hub listening on %s (%s)", self.address, security)
        if started is not None:
            started.set()
        watcher = asyncio.create_task(_watch_revocations(auth, stop))
        try:
            await stop.wait()
        finally:
            watcher.cancel()
            logger.info("Hub stopping")
            if self._jobs is not None:
                self._jobs.closing()
            await _close(server, local_socket, console, grace_s=STOP_GRACE_S)

    def _bind_console(self) -> ConsoleServer | None:
        """Listen for the console (None: it is off, or its packages are not installed)."""
        if self.console_port is None:
            return None
        from giskard.hub import console

        if not console.is_available():
            logger.warning(
                "No console: it needs pip install 'giskard-worker[hub]' (%s)",
                ", ".join(console.REQUIRES),
            )
            self.console_port = None
            return None
        from giskard.hub.console.serving import ConsoleServer

        listening = ConsoleServer(self.host, self.console_port, self.tls)
        self.console_port = listening.port
        return listening

    def _console_app(self, console: ConsoleServer, auth: Authenticator) -> Starlette:
        from giskard.client import status_from_reply
        from giskard.hub.console.app import console_app
        from giskard.hub.console.history import History
        from giskard.hub.platform_service import fleet_status

        registry, jobs, store = self.registry, self._jobs, self._store
        assert self._keys is not None and registry is not None  # set by _add_services
        assert jobs is not None and store is not None
        history = History(lambda: jobs.queued)
        console.run_beside(history.sample_every())
        return console_app(
            self._keys,
            lambda: status_from_reply(fleet_status(registry, jobs, store)),
            registry,
            jobs,
            history,
            secure_cookie=console.tls is not None,
            login_once_s=self.console_login_once_s,
            close_revoked=auth.revoked,
        )

    def _add_services(self, server: grpc.aio.Server) -> Authenticator:
        self._keys = keys = KeyStore(hub_dir(self.home) / "keys.json")
        self.admin_key = ensure_local_admin_key(keys, local_admin_key_path(self.home))
        auth = Authenticator(keys)
        self.registry = registry = WorkerRegistry(self.routing)
        self._store = store = ArtifactStore(self._max_artifact_bytes)
        self._jobs = jobs = JobBoard(registry, store, reattach_grace_s=self.reattach_grace_s)
        worker_service = WorkerHubService(registry, jobs, store, auth, compression=self.compression)
        decoding = DecodingServer(server)  # requests that do not decode: INVALID_ARGUMENT
        worker_pb2_grpc.add_WorkerHubServicer_to_server(worker_service, decoding)
        platform = PlatformService(registry, jobs, store, auth, self.address, self.unread_results)
        self._platform = platform
        client_pb2_grpc.add_PlatformServicer_to_server(platform, decoding)
        admin_pb2_grpc.add_AdminServicer_to_server(AdminService(auth, registry), decoding)
        return auth

    def _bind(self, server: grpc.aio.Server) -> int:
        bind_host = f"[{self.host}]" if ":" in self.host else self.host
        try:
            target = f"{bind_host}:{self.port}"
            if self.tls is None:
                port = server.add_insecure_port(target)
            else:
                port = server.add_secure_port(target, self.tls.credentials())
        except RuntimeError:
            port = 0
        if port == 0:
            raise GiskardError(f"cannot listen on {self.host}:{self.port} (in use or not allowed)")
        return port

    def _bind_local_socket(self, server: grpc.aio.Server) -> LocalSocket | None:
        """Also listen on this user's private Unix socket (see credentials.local_socket_path)."""
        local_socket = LocalSocket.claim(self.port, self.home)
        if local_socket is None:
            return None
        if server.add_insecure_port(f"unix:{local_socket.path}") == 0:
            logger.warning(
                "Cannot listen on %s; same-user clients will not find this hub", local_socket.path
            )
            local_socket.release()
            return None
        return local_socket

    def start(self) -> Hub:
        """Start in a background thread; return once listening."""
        started = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run_in_thread, args=(started, failure), name="giskard-hub", daemon=True
        )
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def _run_in_thread(self, started: threading.Event, failure: list[BaseException]) -> None:
        try:
            # asyncio.run also cancels what the server leaves behind (streams of gone peers).
            asyncio.run(self._serve_in_thread(started))
        except BaseException as exc:
            failure.append(exc)
            started.set()

    async def _serve_in_thread(self, started: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.serve(self._stop, started)

    def stop(self) -> None:
        """Stop a hub started with `start()`; running jobs are failed, workers disconnected."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Hub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def _close(
    server: grpc.aio.Server,
    local_socket: LocalSocket | None,
    console: ConsoleServer | None,
    grace_s: float | None,
) -> None:
    if console is not None:
        await console.stop()
    await server.stop(grace_s)
    if local_socket is not None:
        local_socket.release()


async def _watch_revocations(auth: Authenticator, stop: asyncio.Event) -> None:
    """Revocations made through another hub sharing the key file close sessions here too."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REVOCATION_CHECK_S)
        try:
            auth.sync_revocations()
        except GiskardError as exc:
            logger.warning("Cannot check for revoked keys: %s", exc)
