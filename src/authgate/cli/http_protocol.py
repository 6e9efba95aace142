"""The HTTP/1.1 protocol ``authgate serve`` runs: uvicorn's httptools protocol, with a
bound on the request head's size (431) and on the time to receive the head (slowloris)
and the body ("slow POST").

What uvicorn 0.54 does by itself (read in its source):

* ``httptools`` (what ``auto`` picks, and the fast one): no limit on the head at all.
  Header lines are buffered inside httptools until they end, so one 8 MB header is
  accepted; and nothing times out while a head trickles in, or on a connection that
  never sends a byte (the keep-alive timer only runs between requests, and any byte
  stops it); nor while a body trickles in, or never comes: after a complete head with
  ``Content-Length: 100``, a connection that sends one byte, or none, is held open as
  long as the client likes, with the app waiting in ``receive()`` (a few hundred such
  connections use up a process's file descriptors).
* ``h11``: ``h11_max_incomplete_event_size`` (16 KiB by default) bounds the head, but
  the answer is a generic 400 rather than 431, it has no head timeout either, and h11
  parses in Python (slower on every request).

So authgate keeps httptools and adds both bounds in a subclass, selected through
uvicorn's ``http=`` option. The cost on the hot path: a few comparisons per read, and
no timer at all for a request whose head arrives in one read (the common case).

* **Size.** Bytes read while a request head is incomplete are counted; past
  ``max_head_bytes`` the answer is ``431 Request Header Fields Too Large`` and the
  connection closes: the write side at once, the read side after what the client is
  still sending has been read and dropped for up to a second (a "lingering close", as
  nginx does: closing with unread data would reset the connection, and the client
  could lose the answer). A read that crosses the limit is fed up to the limit first, so
  a head that fits is never refused because a body followed it in the same read. (A
  pipelined head starting in the same read that ends the previous request is counted
  from the next read: the bound is then exceeded by at most one read, 256 KiB.)
* **Time.** A connection must deliver a complete head within ``head_timeout`` seconds
  of being opened, or of the first byte of each next request; otherwise it is answered
  ``408 Request Timeout`` (or simply closed if nothing arrived) and closed the same
  way.
* **Body time.** A request's body must be complete within ``body_timeout`` seconds of
  its head (a total, not a pause between reads as nginx's ``client_body_timeout``: a
  byte every few seconds would otherwise keep a connection for hours). Otherwise the
  app's ``receive()`` gets ``http.disconnect`` (as if the client had gone), the client
  ``408 Request Timeout`` unless the app has answered already, and the connection is
  closed the same way. Bodies are at most ``AUTHGATE_MAX_BODY_BYTES`` (64 KiB by
  default): any real client sends one in well under the default 30 s. Time the server
  is the one waiting for does not count against the client: while the request waits
  behind a pipelined one, while reading is paused (flow control), or before the app
  asks for the body of an ``Expect: 100-continue`` request, the deadline starts again.
* **An answer before the body.** When the app answers a request before its body has
  arrived (a 401, 404 or 413 decided from the head), the answer says
  ``connection: close``, and what arrives next is read and dropped, never parsed, until
  the body's deadline closes the connection (a client still uploading gets to read the
  answer; the write side is closed at once). uvicorn would
  feed it to the parser as that request's body and then as further requests, outside
  both bounds above: its cycle never leaves the "body" state once the response is
  complete.
* **Body size, trailers.** The bytes read for one request's body are bounded too (the
  body limit plus the head limit: chunk framing included), else 413 and closed; and a
  chunked body's trailer fields are refused (400), never added to the headers of a
  request the app is already serving (uvicorn appends them to ``scope["headers"]``, so
  ``Authorization`` could arrive after every check made on the head).
* **An answer owed.** A refusal (431, 408) of a pipelined head that arrives while an
  earlier request's answer is still owed is not written in that answer's place: the
  connection closes after the answer instead (``connection: close``).
* **Open connections.** Beyond ``ConnectionLimit.maximum`` open connections in this
  worker, a new one is answered ``503 overloaded`` (``Retry-After: 1``) at once, before
  it sends anything, and closed the same lingering way; beyond a quarter more (the
  refusals still lingering), it is closed at once. uvicorn's ``limit_concurrency``
  would not do: see ``authgate.cli.connection_limit``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import types
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from authgate.api.encoded_headers import EncodedHeaders, encode_plain_fields
from authgate.api.errors import error_body
from authgate.cli.connection_limit import ConnectionLimit

log = logging.getLogger("authgate.http")
# Refusals of requests anyone can send, one warning each: the server's log configuration
# summarizes their repeats (``cli/log_config.RepeatsSummarized``).
refusals_log = logging.getLogger("authgate.http.refused")


def _error_body(status: int, code: str, message: str) -> bytes:
    """The JSON of an answer the protocol gives before any app sees the request, in the
    API's error shape (no ``path``: there may be none to tell), built when it is sent
    (its ``timestamp``)."""
    body = error_body(status=status, code=code, message=message, path=None)
    return json.dumps(body, separators=(",", ":")).encode("ascii")


def _error_response(status: int, code: str, message: str, *, retry_after: int = 0) -> bytes:
    """:func:`_error_body` as a whole HTTP answer that ends the connection."""
    body = _error_body(status, code, message)
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        "cache-control: no-store\r\n"
        + (f"retry-after: {retry_after}\r\n" if retry_after else "")
        + f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode("ascii") + body


async def _answer_malformed(_scope: Any, _receive: Any, send: Any) -> None:
    """The app a queued request whose body turned out malformed runs in its turn."""
    body = _error_body(*MALFORMED)
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# The protocol's own refusals: (status, code, message), answered by ``_error_response``.
Refusal = tuple[int, str, str]
HEAD_TOO_LARGE: Refusal = (
    431,
    "request_header_fields_too_large",
    "Request header fields too large",
)
HEAD_TIMEOUT: Refusal = (408, "request_timeout", "Request head not received in time")
BODY_TIMEOUT: Refusal = (408, "request_timeout", "Request body not received in time")
BODY_TOO_LARGE: Refusal = (413, "payload_too_large", "Request body too large")
MALFORMED: Refusal = (400, "malformed_request", "Malformed HTTP request")
TOO_MANY_CONNECTIONS: Refusal = (503, "overloaded", "Too many open connections; try again")
# How long the rest of a refused head is read and dropped before the connection closes.
LINGER_SECONDS = 1.0


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing request heads over ``max_head_bytes`` (431)
    or taking longer than ``head_timeout`` seconds, and bodies not complete within
    ``body_timeout`` seconds of their head (408, then closed).

    One parser callback is wrapped, ``on_headers_complete`` (uvicorn's own, building
    :class:`EncodedCycle` requests, then closing the head's header list to trailers);
    no other (each would add a Python call to every request): a head is complete when
    uvicorn's request cycle changes during a read, and a body is being read while the
    current cycle expects more of it.
    """

    def __init__(
        self,
        *args: Any,
        max_head_bytes: int,
        head_timeout: float,
        body_timeout: float = 30.0,
        max_body_bytes: int = 64 * 1024,
        connection_limit: ConnectionLimit | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self._connection_limit = connection_limit
        self._max_head_bytes = max_head_bytes
        # What one request's body may take on the wire: the app's limit (413, enforced
        # on what it reads) plus chunk framing and whatever a head may hold.
        self._max_body_wire_bytes = max_body_bytes + max_head_bytes
        self._body_bytes = 0  # read for the current request's body
        self._head_timeout = head_timeout
        self._body_timeout = body_timeout
        self._head_bytes = 0  # of the head being received
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._server_waited = False  # at the body timer's last check (see _body_timed_out)
        self._refused = False  # answered 431 or 408: what still arrives is dropped

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # counted in self.connections
        limit = self._connection_limit
        if limit is not None and len(self.connections) > limit.maximum:
            self._refuse_connection(limit)
            return
        # A connection that never sends a byte would otherwise stay open for ever.
        self._arm_head_timer()

    def _refuse_connection(self, limit: ConnectionLimit) -> None:
        """Beyond the worker's bound: answer 503 before anything is read, and close.
        While refused connections linger they count as open, so the descriptors in use
        stay under ``limit.lingering_maximum``; beyond it, no lingering."""
        limit.count_refusal(self.loop.time())
        self.transport.write(_error_response(*TOO_MANY_CONNECTIONS, retry_after=1))
        if len(self.connections) > limit.lingering_maximum:
            self._refused = True
            self.transport.close()
            return
        self._linger_then_close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.more_body:
            if self._refused:
                return
            if cycle.response_complete:
                # Answered before its body came in: nothing that follows can be read
                # as a request any more; the body's deadline ends the connection.
                self._refused = True
                if self.transport.can_write_eof():
                    self.transport.write_eof()
                self._watch_body()
                return
            self._body_bytes += len(data)
            if self._body_bytes > self._max_body_wire_bytes:
                self._refuse_oversized_body(cycle)
                return
            super().data_received(data)  # a request body (counted above, not as a head)
            if not cycle.more_body:  # its last part (perhaps the next head after it)
                self._cancel_body_timer()
                self._watch_body()
            return
        if self._refused:
            return
        room = self._max_head_bytes - self._head_bytes
        if len(data) > room:
            # Feed what fits first: if the head ends there, the rest is a body or the
            # next request, not part of an oversized head.
            super().data_received(data[:room])
            if self._refused or self.transport.is_closing():  # e.g. malformed: 400
                return
            if self.cycle is cycle:
                self._refuse_oversized_head()
                return
            self._head_complete()
            super().data_received(data[room:])
            if not self._refused:  # (a queued request's broken body: no deadline)
                self._watch_body()
            return
        super().data_received(data)
        if self.cycle is not cycle:
            self._head_complete()
            # (Most requests: no body, or all of it came. A queued request whose body
            # broke is refused in its turn: no deadline may end the answers owed first.)
            if self.cycle.more_body and not self._refused:
                self._watch_body()
        elif not (self._refused or self.transport.is_closing()):
            self._head_bytes += len(data)
            self._arm_head_timer()  # part of a head arrived: the rest has a deadline

    def _head_complete(self) -> None:
        self._head_bytes = 0
        self._body_bytes = 0
        self._cancel_head_timer()

    def _watch_body(self) -> None:
        """Give the current request's body a deadline, if it is still to come (a request
        without a body, or whose body came with its head, costs no timer)."""
        cycle = self.cycle
        if (
            cycle is not None
            and cycle.more_body
            and self._body_timer is None
            and not self.transport.is_closing()
        ):
            self._body_timer = self.loop.call_later(self._body_timeout, self._body_timed_out)

    def _cancel_body_timer(self) -> None:
        self._server_waited = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self._refused:  # answered before the body: its deadline ends the connection
            self.transport.close()
            return
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self.transport.is_closing():
            return
        if (
            cycle.waiting_for_100_continue
            or self.flow.read_paused
            or any(queued is cycle for queued, _ in self.pipeline)
        ):
            # The server is not reading this body yet (it has not sent 100 Continue, the
            # request waits behind a pipelined one, or reading is paused): the client is
            # not the slow one. The deadline starts again.
            self._server_waited = True
            self._watch_body()
            return
        if self._server_waited:
            # The server stopped waiting at some point of the last period (sent its 100
            # Continue, say, a moment ago): the client gets one whole period from now.
            self._server_waited = False
            self._watch_body()
            return
        refusals_log.warning(
            "request body not complete within %.1f s of its head from %s: %s",
            self._body_timeout,
            self._peer(),
            _outcome(cycle, BODY_TIMEOUT),
        )
        # Whatever the app still sends is dropped (uvicorn's cycle ignores a
        # disconnected one's send).
        self._refuse_body(cycle, BODY_TIMEOUT)

    def _peer(self) -> str:
        """The client's address for a log line."""
        return self.client[0] if self.client else "-"

    def _refuse_oversized_head(self) -> None:
        refusals_log.warning(
            "request head over %d bytes from %s: answered 431",
            self._max_head_bytes,
            self._peer(),
        )
        self._refuse(HEAD_TOO_LARGE)

    def _refuse_oversized_body(self, cycle: Any) -> None:
        refusals_log.warning(
            "request body over %d bytes on the wire from %s: %s",
            self._max_body_wire_bytes,
            self._peer(),
            _outcome(cycle, BODY_TOO_LARGE),
        )
        self._refuse_body(cycle, BODY_TOO_LARGE)

    def _unsupported_upgrade_warning(self) -> None:
        """A request with an ``Upgrade`` header authgate does not take (it speaks no
        WebSocket) is answered as plain HTTP/1.1, which RFC 9110 7.8 allows. uvicorn
        warned twice for each (and advised installing a WebSocket library); UTMStack
        v10's nginx sends ``Upgrade: websocket`` on every forward-auth check: two
        warnings a request (the log review). Nothing to tell an operator."""

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what its parser cannot read (uvicorn logs its own text,
        ``msg``): a head, or a chunked body's framing. In the API's error shape, not as
        plain text; and for a body, the app reading it learns that it will not come."""
        cycle = self.cycle
        if cycle is None or not cycle.more_body or cycle.response_complete:
            self._refuse(MALFORMED)
            return
        for index, (queued, _app) in enumerate(self.pipeline):
            if queued is cycle:
                # Its turn has not come: the answers of the requests before it are owed
                # first. It is answered 400 in its turn, without its app, saying that
                # the connection ends (``EncodedCycle``: an answer before the body);
                # nothing that arrives from now on is parsed.
                self.pipeline[index] = (cycle, _answer_malformed)
                self._refused = True
                self._cancel_body_timer()
                return
        self._refuse_body(cycle, MALFORMED)

    def _refuse_body(self, cycle: Any, refusal: Refusal) -> None:
        """Give up on the body being read: the app's ``receive()`` learns that the client
        is gone; the client gets ``refusal``, or, if the app has begun its answer, the
        connection closes."""
        cycle.disconnected = True
        cycle.message_event.set()
        self._cancel_body_timer()
        if cycle.response_started:
            self._refused = True
            self.transport.close()
            return
        self._refuse(refusal)

    def _refuse(self, refusal: Refusal) -> None:
        """Answer, close the write side, then read and drop what still arrives for a
        moment before closing: closing with unread data would reset the connection,
        and the client could lose the answer. If an earlier request's answer is still
        owed (a pipelined head refused), nothing is written in its place: the
        connection closes after that answer."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.disconnected:
            self._cancel_head_timer()
            self._refused = True
            cycle.keep_alive = False  # uvicorn closes once the answer is written
            return
        self.transport.write(_error_response(*refusal))
        self._linger_then_close()

    def _linger_then_close(self) -> None:
        """Close the write side, drop what still arrives for a moment, then close."""
        self._cancel_head_timer()
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._head_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        cycle = self.cycle
        if (cycle is not None and cycle.more_body) or self.transport.is_closing():
            return  # (cannot happen: the timer is cancelled when a head completes)
        if not self._head_bytes:
            self.transport.close()  # never said anything: nothing to answer
            return
        refusals_log.warning(
            "request head not complete within %.1f s from %s: answered 408",
            self._head_timeout,
            self._peer(),
        )
        self._refuse(HEAD_TIMEOUT)


def _outcome(cycle: Any, refusal: Refusal) -> str:
    """What ``_refuse_body(cycle, refusal)`` does, for a log line."""
    return "connection closed" if cycle.response_started else f"answered {refusal[0]}"


class EncodedCycle(RequestResponseCycle):
    """uvicorn's request cycle, writing the response head of headers that come already
    encoded (:class:`~authgate.api.encoded_headers.EncodedHeaders`, checked when built)
    without encoding them again. The bytes are the ones uvicorn writes: its status
    line, its default headers (``date``), the headers in order, ``connection: close``
    when the connection ends. Every other message goes to uvicorn's ``send``."""

    async def send(self, message: Any) -> None:
        if not self.response_started:
            if self.more_body and self.keep_alive and message["type"] == "http.response.start":
                # Answered before the request's body is in: nothing more on this
                # connection will be read as a request (BoundedHeadProtocol drops it),
                # so the answer says so, and the client does not send its next request
                # there to see it fail. uvicorn writes ``connection: close`` for a cycle
                # that is not kept alive, and would close at once when the answer is
                # complete, resetting a connection with unread data (the client could
                # lose the answer): the protocol's lingering close ends it instead.
                self.keep_alive = False
                try:
                    await super().send(message)
                finally:
                    self.keep_alive = True
                return
            headers = message.get("headers")
            if (
                type(headers) is EncodedHeaders
                and message["type"] == "http.response.start"
                and not self.flow.write_paused
                and not self.disconnected
                and not self.access_log
                and self.chunked_encoding is None
            ):
                defaults = _default_head(self.default_headers)
                if defaults is not None:
                    self._start_encoded(message["status"], defaults, headers)
                    return
        await super().send(message)

    def _start_encoded(self, status: int, defaults: bytes, headers: EncodedHeaders) -> None:
        self.response_started = True
        self.waiting_for_100_continue = False
        self.expected_content_length = headers.content_length
        self.chunked_encoding = False
        head = [STATUS_LINE[status], defaults, headers.encoded]
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        self.transport.write(b"".join(head))


# The server's default headers (``date``; uvicorn makes a new list when the second
# changes) and their encoding, for the list last seen (held, so never a reused id).
_default_headers: tuple[object, bytes | None] = (None, None)


def _default_head(default_headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The default headers' lines as uvicorn writes them; None if one is not plain."""
    global _default_headers  # a one-entry cache
    seen, encoded = _default_headers
    if seen is not default_headers:
        encoded = encode_plain_fields(default_headers)
        _default_headers = (default_headers, encoded)
    return encoded


def _building_cycles_of(cycle_class: type[RequestResponseCycle]) -> Any:
    """uvicorn's ``on_headers_complete`` (its code, unchanged) building request cycles of
    ``cycle_class``: it names ``RequestResponseCycle`` as a global of its module, so the
    same code runs here with that one global replaced. (Changing each cycle's
    ``__class__`` afterwards works too, but the interpreter's attribute caches then miss
    on every cycle: ~1.3 us a request, measured.) tests/test_encoded_headers.py checks
    that a request through ``BoundedHeadProtocol`` gets an ``EncodedCycle``."""
    original = HttpToolsProtocol.on_headers_complete
    namespace = {**original.__globals__, "RequestResponseCycle": cycle_class}
    return types.FunctionType(
        original.__code__, namespace, original.__name__, original.__defaults__, original.__closure__
    )


def _uvicorn_builds_cycles_by_name() -> bool:
    """Whether this uvicorn's ``on_headers_complete`` builds its cycle through the module
    global ``RequestResponseCycle`` (true of the pinned release, which the tests check).
    A release that does it otherwise keeps its own code: answers are then encoded by
    uvicorn as for any response (same bytes, a few microseconds more), never broken."""
    original = HttpToolsProtocol.on_headers_complete
    code = getattr(original, "__code__", None)
    namespace = getattr(original, "__globals__", {})
    return (
        code is not None
        and "RequestResponseCycle" in code.co_names
        and namespace.get("RequestResponseCycle") is RequestResponseCycle
    )


class _NoTrailers(list[tuple[bytes, bytes]]):
    """Stands for the header list once a request's head is complete: httptools reports a
    chunked body's trailer fields as headers, and uvicorn would append them to the list
    that is the running request's ``scope["headers"]``. Appending raises, which httptools
    turns into a parser error: ``send_400_response`` answers 400 and ends the body."""

    def append(self, _field: tuple[bytes, bytes]) -> None:
        raise ValueError("trailer fields are not accepted")


_NO_TRAILERS = _NoTrailers()


def _then_no_trailers(build: Any) -> Any:
    """uvicorn's ``on_headers_complete`` (``build``), then the head's list closed."""

    def on_headers_complete(self: HttpToolsProtocol) -> None:
        build(self)
        self.headers = _NO_TRAILERS  # on_message_begin gives the next request a new list

    return on_headers_complete


ENCODED_CYCLES = _uvicorn_builds_cycles_by_name()
if not ENCODED_CYCLES:  # pragma: no cover - only with a uvicorn other than the pinned one
    log.info(
        "uvicorn builds its request cycles differently: forward-auth headers are encoded per answer"
    )
BoundedHeadProtocol.on_headers_complete = _then_no_trailers(  # type: ignore[method-assign]
    _building_cycles_of(EncodedCycle) if ENCODED_CYCLES else HttpToolsProtocol.on_headers_complete
)


def bounded_head_protocol(
    *,
    max_head_bytes: int,
    head_timeout: float,
    body_timeout: float = 30.0,
    max_body_bytes: int = 64 * 1024,
    max_connections: int | None = None,
) -> Any:
    """The protocol factory for uvicorn's ``http=`` option: a ``functools.partial`` of a
    module-level class, so it pickles into the worker processes of ``--workers N`` (each
    then counts its own connections against ``max_connections``)."""
    return functools.partial(
        BoundedHeadProtocol,
        max_head_bytes=max_head_bytes,
        head_timeout=head_timeout,
        body_timeout=body_timeout,
        max_body_bytes=max_body_bytes,
        connection_limit=None if max_connections is None else ConnectionLimit(max_connections),
    )
