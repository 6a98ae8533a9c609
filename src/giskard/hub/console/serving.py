"""The console's HTTP server: uvicorn on the hub's own event loop, on a socket we bind."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Coroutine, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette

from giskard.address import HubAddress
from giskard.errors import GiskardError
from giskard.tls import ServerCertificate

logger = logging.getLogger(__name__)

# How long open page loads may take to finish when the hub stops.
STOP_GRACE_S = 2.0


class _HubOwnedServer(uvicorn.Server):
    """A uvicorn server that leaves the signals to the hub: the hub stops it with the rest."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ConsoleServer:
    """Listens on `host:port` (0: any free port) at once, with TLS when `tls` is given; serves
    an app once started."""

    def __init__(self, host: str, port: int, tls: ServerCertificate | None) -> None:
        self._socket = _listen(host, port)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self.tls = tls
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._beside: list[asyncio.Task[None]] = []  # what runs while it serves (run_beside)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{HubAddress(self.host, self.port).target}"

    async def start(self, app: Starlette) -> None:
        """Serve `app`; return once it answers."""
        tls = self.tls
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,  # the hub's logging, not uvicorn's own
            access_log=False,
            timeout_graceful_shutdown=STOP_GRACE_S,
            ssl_certfile=str(tls.cert_file) if tls else None,
            ssl_keyfile=str(tls.key_file) if tls else None,
        )
        self._server = server = _HubOwnedServer(config)
        self._task = asyncio.create_task(server.serve([self._socket]))
        while not server.started:
            if self._task.done():
                self._task.result()  # what made it fail
                raise GiskardError(f"the console could not start on {self.url}")
            await asyncio.sleep(0.01)
        logger.info("Console on %s", self.url)

    def run_beside(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the hub's loop until the console stops (the charts' sampler)."""
        self._beside.append(asyncio.create_task(work))

    async def stop(self) -> None:
        """Stop serving (open requests get STOP_GRACE_S to end) and close the socket."""
        for task in self._beside:
            task.cancel()
        if self._server is not None and self._task is not None and not self._task.done():
            self._server.should_exit = True
            await self._task
        self._socket.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port`; one clear error if it is taken or not allowed."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError:
        raise GiskardError(f"cannot listen on {host}:{port} (in use or not allowed)") from None
    try:
        # As uvicorn does: a restarted hub binds again while old connections are in TIME_WAIT
        # (on Linux this never lets two servers listen on one port).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise GiskardError(
            f"cannot listen on {host}:{port} for the console (in use or not allowed)"
        ) from None
    sock.setblocking(False)
    return sock
