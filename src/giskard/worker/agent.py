"""The worker process: connect, serve, reconnect with backoff, stop cleanly on a signal or
when the hub's admin drains or stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

from giskard.channel import open_aio_channel, uses_local_socket
from giskard.credentials import Credentials
from giskard.errors import AuthenticationError, GiskardError
from giskard.rpc.v1 import worker_pb2
from giskard.tls import explain_failure
from giskard.worker.backoff import Backoff
from giskard.worker.cache_report import CacheReports
from giskard.worker.config import WorkerConfig
from giskard.worker.execution import JobExecution
from giskard.worker.info import collect_info, info_to_proto
from giskard.worker.job_link import JobLink
from giskard.worker.pool import ExecutorPool
from giskard.worker.session import ConnectionLost, Session

logger = logging.getLogger(__name__)

JOBS_REPORT_INTERVAL_S = 1.0
# What the worker's caches hold now, for the hub (see cache_report).
Report = Callable[[], worker_pb2.CacheReport]


class Worker:
    """`Worker(config).run()` owns the process; `await run_async(stopping)` runs in a host loop."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._address = str(config.address)
        # Those of the latest attempt: without a key given, each attempt looks again for the
        # local admin key, which a hub started since may have created.
        self._credentials = config.credentials
        # Told when a session starts (with whether this worker is active) and when it ends.
        self.on_connected: Callable[[bool], None] = lambda active: None
        self.on_disconnected: Callable[[], None] = lambda: None
        # Told (at most every JOBS_REPORT_INTERVAL_S) how many jobs run, for `worker status`.
        self.on_jobs: Callable[[int], None] = lambda running: None
        # Told when the hub's admin pauses (True) or resumes (False) this worker.
        self.on_paused: Callable[[bool], None] = lambda paused: None
        # Why the worker stopped, when the hub's admin drained or stopped it; else None.
        self.stop_reason: str | None = None
        # Who stopped it otherwise, for the jobs it drains: a signal, or its host.
        self._stopped_by = "Stopped by the process that runs the worker"

    def run(self) -> None:
        """Run until SIGINT or SIGTERM; a second signal abandons the running job at once."""
        asyncio.run(self._run_with_signals())

    async def _run_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        main = asyncio.current_task()

        def on_signal(signum: int) -> None:
            if stopping.is_set():
                logger.warning("Second %s: stopping now", signal.Signals(signum).name)
                assert main is not None
                main.cancel()
                return
            logger.info("%s received: stopping", signal.Signals(signum).name)
            self._stopped_by = f"Stopped by {signal.Signals(signum).name}"
            stopping.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            await self.run_async(stopping)
        except asyncio.CancelledError:
            pass
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        logger.info("Worker stopped%s", f": {self.stop_reason}" if self.stop_reason else "")

    async def run_async(self, stopping: asyncio.Event) -> None:
        """Serve until `stopping` is set; ProtocolError (fatal) propagates."""
        pool = ExecutorPool(self.config.concurrency, self.config.executor_options())
        # Started now, beside the connection: a job that comes first waits for its executor.
        pool.start()
        execution = JobExecution(pool, self._info)
        link = JobLink(execution, self.config.reattach_grace_s)
        reporter = asyncio.create_task(self._report_jobs(execution))
        closer = asyncio.create_task(_close_on(stopping, pool))
        try:
            await self._serve(link, stopping, CacheReports(pool).current)
        finally:
            reporter.cancel()
            closer.cancel()
            await link.close()
            await pool.close()

    def _info(self) -> dict[str, Any]:
        """This worker's info, as it is now: the hello's, and the `info` job's result."""
        config = self.config
        return collect_info(self._address, config.name, dict(config.labels))

    async def _report_jobs(self, execution: JobExecution) -> None:
        while True:
            self.on_jobs(execution.running)
            await asyncio.sleep(JOBS_REPORT_INTERVAL_S)

    async def _serve(self, link: JobLink, stopping: asyncio.Event, cache_report: Report) -> None:
        backoff = Backoff(self.config.backoff_initial_s, self.config.backoff_max_s)
        info = info_to_proto(self._info())
        logger.info(
            "Worker starting: %s, pid %d, Python %s (%s), hub %s",
            info.name,
            info.pid,
            info.python_version,
            info.interpreter,
            self._address,
        )
        while not stopping.is_set():
            try:
                await self._one_session(link, info, stopping, backoff, cache_report)
                return
            except ConnectionLost as lost:
                self.on_disconnected()
                reason = lost.reason
                if not lost.was_connected:
                    reason = await self._explain(reason)
                delay_s = backoff.next_delay_s()
                what = "Lost the connection to" if lost.was_connected else "Cannot reach"
                logger.warning(
                    "%s the Giskard server at %s: %s; retrying in %.1f s",
                    what,
                    self._address,
                    reason,
                    delay_s,
                )
            except GiskardError:
                raise
            except Exception as exc:
                # A bug must not end a service's worker for good: say it, then start over.
                self.on_disconnected()
                delay_s = backoff.next_delay_s()
                logger.error(
                    "Unexpected %s: %s; retrying in %.1f s", type(exc).__name__, exc, delay_s
                )
                logger.debug("Details", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay_s)

    async def _explain(self, reason: str) -> str:
        """A TLS mismatch or an untrusted certificate, if that is why we could not connect."""
        config = self.config
        local = uses_local_socket(self._credentials, config.security)
        return await asyncio.to_thread(
            explain_failure,
            reason,
            config.address.host,
            config.address.port,
            config.security,
            local_socket=local,
        )

    async def _one_session(
        self,
        link: JobLink,
        info: object,
        stopping: asyncio.Event,
        backoff: Backoff,
        cache_report: Report,
    ) -> None:
        def connected(active: bool) -> None:
            backoff.reset()
            self.on_connected(active)

        config = self.config
        self._credentials = credentials = config.credentials.current(config.address.host)
        # A fresh channel per attempt, with its own subchannel (see protocol.CHANNEL_OPTIONS):
        # our backoff, not gRPC's, paces the attempts.
        async with open_aio_channel(config.address, credentials, config.security) as channel:
            session = Session(
                config,
                credentials,
                channel,
                link,
                info,
                connected,
                self.on_paused,
                stopped_by=lambda: self._stopped_by,
                cache_report=cache_report,
            )
            try:
                await session.run(stopping)
                self.stop_reason = session.stop_reason
            except AuthenticationError:
                if _found_since(credentials, config):
                    # The local hub started between our look for its key and our dial.
                    lost = ConnectionLost("the local hub was starting", was_connected=False)
                    raise lost from None
                raise


async def _close_on(stopping: asyncio.Event, pool: ExecutorPool) -> None:
    # From the stop signal on, a job abandoned at the end of the drain must not start a new
    # executor on the way out.
    await stopping.wait()
    pool.closing()


def _found_since(tried: Credentials, config: WorkerConfig) -> bool:
    """Whether an attempt without a key was refused only because the local admin key
    appeared after we looked for it."""
    return tried.key is None and config.credentials.current(config.address.host).key is not None
