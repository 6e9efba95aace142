"""A raw HTTP/1.1 server on loopback that answers some paths and never answers the
others: it accepts the connection, reads the request and holds it open, as a server
that hangs does. Closing it closes the held connections, so a client that waits
forever (the bug under test) is released when the test ends."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

__all__ = ["StallingServer"]


class StallingServer:
    """Answers ``answers[path]`` (status, JSON body), with ``headers[path]`` if given;
    holds every other request open.

    ``requests`` lists the ``(method, path)`` of each request read, in order.
    """

    def __init__(
        self,
        answers: Mapping[str, tuple[int, dict[str, Any]]] | None = None,
        *,
        headers: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self._answers = dict(answers or {})
        self._headers = dict(headers or {})
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stopping = threading.Event()
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> Self:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            for connection in self._connections:
                connection.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by __exit__
                return
            with self._lock:
                self._connections.append(connection)
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, connection: socket.socket) -> None:
        buffered = b""
        try:
            while not self._stopping.is_set():
                while b"\r\n\r\n" not in buffered:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                while len(buffered) < length:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                buffered = buffered[length:]
                path = target.split("?", 1)[0]
                with self._lock:
                    self.requests.append((method, path))
                if path not in self._answers:
                    self._stopping.wait()  # hold the request open, never answer
                    return
                status, body = self._answers[path]
                content = json.dumps(body).encode()
                extra = "".join(
                    f"{name}: {value}\r\n" for name, value in self._headers.get(path, {}).items()
                )
                connection.sendall(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}"
                    f"Content-Length: {len(content)}\r\n\r\n".encode()
                    + content
                )
        except OSError:
            return
