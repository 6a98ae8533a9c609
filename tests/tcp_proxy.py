"""A TCP proxy on loopback that a test controls: it forwards to a port, and can cut every
connection it carries (a blink of the network) or refuse new ones for a while (an outage)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType

ACCEPT_POLL_S = 0.1
BUFFER_BYTES = 256 * 1024


class TcpProxy:
    """`with TcpProxy(target_port) as proxy:` listens on `proxy.port`, forwarding each
    connection to 127.0.0.1:`target_port`, until the end of the block."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(ACCEPT_POLL_S)  # so that the accept loop sees `_closed`
        self.port: int = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._refusing = threading.Event()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connections = 0  # accepted and forwarded so far
        self._start(self._accept)

    def cut(self) -> None:
        """Close every open connection, both ways; new ones are still accepted."""
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            _close(sock)

    def refuse(self) -> None:
        """Cut, and close each new connection at once until `restore()`."""
        self._refusing.set()
        self.cut()

    def restore(self) -> None:
        self._refusing.clear()

    def close(self, timeout_s: float = 5.0) -> None:
        self._closed.set()
        self.cut()
        self._server.close()
        for thread in self._threads:
            thread.join(timeout_s)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                downstream, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._refusing.is_set():
                _close(downstream)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _close(downstream)
                continue
            for sock in (downstream, upstream):
                sock.settimeout(None)
            with self._lock:
                self._open += [downstream, upstream]
                self.connections += 1
            self._start(_pump, downstream, upstream)
            self._start(_pump, upstream, downstream)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until either side closes; then close both, as a broken link would."""
    try:
        while data := source.recv(BUFFER_BYTES):
            sink.sendall(data)
    except OSError:
        pass
    _close(source)
    _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the other side
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
