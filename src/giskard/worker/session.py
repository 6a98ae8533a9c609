"""One session with the hub: hello, then jobs until the stream ends or the worker stops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from giskard.compression import codecs_decoded
from giskard.credentials import Credentials
from giskard.errors import AuthenticationError, GiskardError, ProtocolError
from giskard.protocol import PROTOCOL_VERSION, SESSION_METADATA_KEY
from giskard.rpc.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from giskard.rpc_errors import describe_rpc_error
from giskard.session_batches import OutboxReader, worker_batch
from giskard.worker.config import WorkerConfig
from giskard.worker.job_link import CLOSE_TIMEOUT_S, JobLink, end_tasks

logger = logging.getLogger(__name__)

CONNECTED_MESSAGE = "Connected to Giskard server."
# How often the worker looks whether its caches changed, to tell the hub (a report is small).
CACHE_REPORT_INTERVAL_S = 1.0


class ConnectionLost(Exception):
    """The session could not be established or ended; the worker reconnects."""

    def __init__(self, reason: str, *, was_connected: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.was_connected = was_connected


class Session:
    def __init__(
        self,
        config: WorkerConfig,
        credentials: Credentials,
        channel: grpc.aio.Channel,
        link: JobLink,
        info: common_pb2.WorkerInfo,
        on_connected: Callable[[bool], None] = lambda active: None,
        on_paused: Callable[[bool], None] = lambda paused: None,
        stopped_by: Callable[[], str] = lambda: "Stopped",
        cache_report: Callable[[], worker_pb2.CacheReport] = worker_pb2.CacheReport,
    ) -> None:
        """`link` holds the worker's jobs, which outlive this session; `stopped_by` says who
        stopped the worker (for the jobs it drains), unless the hub's admin did;
        `cache_report` what its caches hold now."""
        self._config = config
        self._stub = worker_pb2_grpc.WorkerHubStub(channel)
        self._link = link
        self._info = info
        self._metadata = credentials.metadata()
        self._on_connected = on_connected
        self._on_paused = on_paused
        # Bounded: a large result is produced only as fast as gRPC sends it.
        self._outbox: asyncio.Queue[worker_pb2.WorkerMessage | None] = asyncio.Queue(maxsize=16)
        # Batches once the hub's welcome says it accepts them.
        self._outbox_reader = OutboxReader(self._outbox, worker_batch)
        self._stopped_by = stopped_by
        self._cache_report = cache_report
        self._reports_cache = False  # the hub's welcome says whether it takes the reports
        self._stopping = asyncio.Event()
        # How long the running jobs may take to finish once stopping; None: as long as they run.
        self._drain_grace_s: float | None = config.drain_grace_s
        # Why this session stopped the worker, when the hub's admin told it to.
        self.stop_reason: str | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        """Serve jobs until `stopping` is set (then drain and return) or the hub goes away;
        an admin's drain or stop sets `stopping` too, and says why in `stop_reason`."""
        self._stopping = stopping
        hello = worker_pb2.Hello(
            protocol_version=PROTOCOL_VERSION,
            info=self._info,
            concurrency=self._config.concurrency,
            prefetch=self._config.prefetch,
            held_jobs=self._link.held(),
            reattaches=True,
            accepts_batches=True,
            compression=codecs_decoded(),
        )
        self._outbox.put_nowait(worker_pb2.WorkerMessage(hello=hello))
        call = self._stub.Connect(metadata=self._metadata)
        # Our own writer task rather than a request generator: gRPC leaves the task that
        # drains a generator pending when the call ends first (a hub gone), to be destroyed
        # later with asyncio's errors; a task of ours ends with the session.
        writer = asyncio.create_task(self._write(call))
        try:
            await self._handshake(call)
            await self._serve(call, stopping)
        finally:
            call.cancel()
            # The jobs go on: the next session may get them back (see JobLink).
            self._link.detach(self._outbox)
            await end_tasks(writer)

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:
        try:
            while (message := await self._outbox_reader.next()) is not None:
                await call.write(message)
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # the call ended: the reader says why

    async def _handshake(self, call: grpc.aio.StreamStreamCall) -> None:
        try:
            first = await asyncio.wait_for(call.read(), self._config.handshake_timeout_s)
        except TimeoutError:
            raise ConnectionLost("no answer to the hello", was_connected=False) from None
        except grpc.aio.AioRpcError as exc:
            raise _lost(exc, was_connected=False) from None
        if first is grpc.aio.EOF:
            raise ConnectionLost("the server closed the session", was_connected=False)
        if first.WhichOneof("kind") == "refusal":
            raise refusal_error(first.refusal)
        if first.WhichOneof("kind") != "welcome":
            raise ProtocolError("the server did not answer the hello with a welcome")
        welcome = first.welcome
        active = welcome.active
        # Before the jobs may write to the outbox (attach below): only the hello was in it.
        self._outbox_reader.batching = welcome.accepts_batches
        self._reports_cache = welcome.accepts_cache_reports
        # A job's calls beside the session (SendResult, FetchArtifact) name the session.
        session_id = (SESSION_METADATA_KEY, welcome.session_id)
        self._metadata = (*self._metadata, session_id)
        self._link.attach(
            self._outbox,
            self._stub,
            self._metadata,
            set(welcome.reattached),
            grace_s=welcome.reattach_grace_s,
        )
        logger.info(
            "%s %s (%s)",
            CONNECTED_MESSAGE,
            self._config.address,
            "active" if active else "standby: another worker is active for this hub",
        )
        if welcome.compression:
            logger.info("The hub sends this worker's inputs %s-compressed", welcome.compression)
        self._on_connected(active)

    async def _serve(self, call: grpc.aio.StreamStreamCall, stopping: asyncio.Event) -> None:
        reader = asyncio.create_task(self._read(call))
        stop_waiter = asyncio.create_task(stopping.wait())
        reporter = asyncio.create_task(self._report_cache())
        try:
            await asyncio.wait({reader, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()  # raises ConnectionLost
                raise ConnectionLost("the server closed the session", was_connected=True)
            await end_tasks(reporter)  # nothing more after the drain closes the stream
            await self._drain(reader)
            # The hub ends the session once it has read everything we sent; cancelling the
            # call before then could drop the last results.
            try:
                await asyncio.wait_for(reader, CLOSE_TIMEOUT_S)
            except (TimeoutError, ConnectionLost):
                logger.debug("the server did not close the session cleanly")
        finally:
            await end_tasks(stop_waiter, reader, reporter)

    async def _report_cache(self) -> None:
        """Tell the hub what the caches hold, as the session starts and whenever it changes."""
        sent = None
        while self._reports_cache:
            report = self._cache_report()
            if report != sent:
                await self._outbox.put(worker_pb2.WorkerMessage(cache=report))
                sent = report
            await asyncio.sleep(CACHE_REPORT_INTERVAL_S)

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        try:
            # read(), not `async for`: gRPC forbids mixing the two on one call, and the
            # handshake already used read().
            while (message := await call.read()) is not grpc.aio.EOF:
                self._handle(message)
        except grpc.aio.AioRpcError as exc:
            raise _lost(exc, was_connected=True) from None

    def _handle(self, message: worker_pb2.HubMessage) -> None:
        if message.WhichOneof("kind") != "batch":
            self._handle_one(message)
            return
        for inner in message.batch.messages:
            self._handle_one(inner)

    def _handle_one(self, message: worker_pb2.HubMessage) -> None:
        kind = message.WhichOneof("kind")
        if kind == "job":
            self._link.start(message.job)
        elif kind == "cancel":
            self._link.cancel(message.cancel.job_id)
        elif kind == "refusal":
            raise refusal_error(message.refusal)
        elif kind == "role":
            state = "active" if message.role.active else "standby"
            logger.info("This worker is now %s: %s", state, message.role.message)
        elif kind == "control":
            self._obey(message.control)
        else:
            logger.warning("Ignored an unexpected %r message from the server", kind)

    def _obey(self, order: worker_pb2.Control) -> None:
        """An admin of the hub paused, resumed, drained or stopped this worker."""
        Control = worker_pb2.Control
        by = f"{order.by} of the hub at {self._config.address}"
        if order.action in (Control.PAUSE, Control.RESUME):
            paused = order.action == Control.PAUSE
            until = ": no new jobs until resumed" if paused else ""
            logger.info("%s by %s%s", "Paused" if paused else "Resumed", by, until)
            self._on_paused(paused)
            return
        if order.action == Control.DRAIN:
            self.stop_reason = f"Drained by {by}"
            self._drain_grace_s = None  # every job it holds finishes, however long it takes
        elif order.action == Control.STOP:
            self.stop_reason = f"{'Force-stopped' if order.force else 'Stopped'} by {by}"
            if order.force:
                for job_id in self._link.jobs:
                    self._link.cancel(job_id)
        else:
            logger.warning("Ignored an unknown control from the server: %s", order.action)
            return
        logger.info("%s; exiting once its %d job(s) end", self.stop_reason, len(self._link.jobs))
        self._stopping.set()

    async def _drain(self, reader: asyncio.Task[None]) -> None:
        """Tell the hub to send no more jobs, let the running ones finish (those that cannot
        end as drained), close the stream.

        If the connection drops meanwhile, the worker still waits for its jobs, then exits
        without coming back: the hub waits for no draining worker (it fails its jobs as worker
        lost, at once if it read the Draining). Their ends are kept and lost like those of any
        job whose session dropped; a job waiting for a session stops when the grace ends."""
        await self._put_or_give_up(worker_pb2.WorkerMessage(draining=worker_pb2.Draining()))
        why = self.stop_reason or self._stopped_by()
        finishing = asyncio.create_task(self._link.finish(self._drain_grace_s, why))
        try:
            await asyncio.wait({reader, finishing}, return_when=asyncio.FIRST_COMPLETED)
            if not finishing.done():
                logger.warning(
                    "The connection dropped while the worker drained: exiting once its %d "
                    "job(s) end",
                    len(self._link.jobs),
                )
                self._link.detach(self._outbox)  # nobody sends the outbox any more
                await finishing
        finally:
            await end_tasks(finishing)
        if not reader.done():
            await self._put_or_give_up(None)

    async def _put_or_give_up(self, message: worker_pb2.WorkerMessage | None) -> None:
        # A hub that stopped reading must not make a shutdown hang.
        try:
            await asyncio.wait_for(self._outbox.put(message), self._config.drain_grace_s)
        except TimeoutError:
            logger.warning("The server is not reading; closing without telling it")


def refusal_error(refusal: worker_pb2.Refusal) -> GiskardError:
    text = f"the Giskard server refused this worker: {refusal.message}"
    if refusal.reason == worker_pb2.Refusal.KEY_REVOKED:
        return AuthenticationError(text)
    return ProtocolError(text)


def _lost(exc: grpc.aio.AioRpcError, *, was_connected: bool) -> ConnectionLost:
    code = exc.code()
    if code == grpc.StatusCode.UNIMPLEMENTED:
        raise ProtocolError(
            f"the server does not speak the giskard worker protocol v{PROTOCOL_VERSION}"
        )
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        hint = (
            " (set GISKARD_API_KEY or use --api-key-file)"
            if "no API key" in (exc.details() or "")
            else ""
        )
        raise AuthenticationError(f"the Giskard server refused this worker: {exc.details()}{hint}")
    return ConnectionLost(describe_rpc_error(exc), was_connected=was_connected)
