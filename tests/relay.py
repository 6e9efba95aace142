"""A TCP relay that a test can cut and restore: a database that becomes unreachable
under a running server (and comes back), without stopping the shared database server."""

from __future__ import annotations

import errno
import random
import socket
import threading
from contextlib import suppress
from pathlib import Path

# Where the relay listens: below the kernel's ephemeral range, so that while it is cut no
# outgoing connection (of this machine's other tests, or the server's own reconnection
# attempts to this very port, which can connect to themselves) can take its port before
# ``restore`` binds it again.
_LOW_PORTS = (10_000, 32_000)


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999


class TcpRelay:
    """Forwards connections from a loopback port to ``(host, port)``. ``cut`` closes the
    listener and every relayed connection (clients see resets, new connections are
    refused); ``restore`` listens again on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = self._listen_outside_ephemeral_ports()
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        return listener

    @classmethod
    def _listen_outside_ephemeral_ports(cls) -> socket.socket:
        ephemeral_low, ephemeral_high = _ephemeral_ports()
        candidates = [
            port for port in range(*_LOW_PORTS) if not ephemeral_low <= port <= ephemeral_high
        ]
        for port in random.sample(candidates, 200):
            try:
                return cls._listen(port)
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
        raise RuntimeError("no free port below the ephemeral range for the relay")

    def _start(self) -> None:
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        for end in (source, sink):
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        # Shut down first: closing alone leaves the socket listening while the accepting
        # thread is blocked in accept() (the call holds it), so the next connection would
        # still be accepted and restore() could not bind the port again.
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for end in sockets:
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def restore(self) -> None:
        self._listener = self._listen(self.port)
        self._start()

    def close(self) -> None:
        self.cut()
