"""The request body's deadline and an answer given before the body, in-process: authgate's
``BoundedHeadProtocol`` on a recording transport, with a small ASGI app whose timing the
test controls (tests/test_http_limits.py checks the same bounds on a real server).

* An answer before the body (a 404 decided from the head) closes the connection: what
  follows is never parsed as the body and then as further requests, which escaped the
  head's size and time bounds (attack review: an 8 MB header got through, and a worker
  spun for up to 30 s per connection).
* Time the server is the one waiting for does not count against the client: a request
  queued behind a slow pipelined one, and an ``Expect: 100-continue`` request whose app
  asks for the body late, get their answers in order, never a 408 first.
* A chunked body's trailer fields are refused (they were appended to the running
  request's headers: an ``Authorization`` after every check of the head), and a body's
  bytes on the wire are bounded (trailers were not counted at all).
* A pipelined head refused while an earlier answer is owed does not take its place.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from authgate.cli.http_protocol import bounded_head_protocol

BODY_TIMEOUT = 0.1


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.eof = False

    def write(self, data: Any) -> None:
        self.written += data

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return self.closed or self.eof

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope: Any, receive: Any, send: Any) -> None:
    """``/slow`` answers after 0.3 s; ``/late`` reads its body after 0.3 s and echoes
    it; ``/echo`` echoes its body, then the names of the request's headers; anything
    else is a 404 decided from the head."""
    path = scope["path"]
    if path in ("/slow", "/late"):
        await asyncio.sleep(0.3)
    body = b"slow"
    if path in ("/late", "/echo"):
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        body += b"|" + b",".join(name for name, _ in scope["headers"])
    elif path != "/slow":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"nope"})
        return
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def connected(head_timeout: float = 10.0) -> tuple[Any, RecordingTransport, ServerState]:
    config = Config(app=app, log_level="warning", access_log=False)
    config.load()
    state = ServerState()
    make = bounded_head_protocol(
        max_head_bytes=8192,
        head_timeout=head_timeout,
        body_timeout=BODY_TIMEOUT,
        max_body_bytes=1024,
    )
    protocol = make(config=config, server_state=state, app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport, state


async def settle(state: ServerState) -> None:
    while state.tasks:
        await asyncio.gather(*state.tasks)


def statuses(written: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", written)


async def test_an_answer_before_the_body_closes_the_connection() -> None:
    protocol, transport, state = connected()
    protocol.data_received(b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    await settle(state)
    assert statuses(bytes(transport.written)) == [b"404"]
    # The answer says that the connection ends (attack review: an SDK's next request on
    # it failed with "Server disconnected without sending a response").
    assert b"connection: close" in transport.written.lower()
    assert not transport.closed  # not at once: the client may still be uploading
    # The late body and a next request (an oversized head, in the review) are dropped,
    # unparsed; a client still uploading may go on until the body's deadline.
    protocol.data_received(b"0123456789GET /slow HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000)
    protocol.data_received(b"a" * 20000)
    await settle(state)
    assert statuses(bytes(transport.written)) == [b"404"]
    assert transport.eof  # the write side at once
    await asyncio.sleep(BODY_TIMEOUT * 2)
    assert transport.closed  # the rest at the deadline
    protocol.connection_lost(None)


async def test_a_body_sent_in_time_after_a_full_answer_keeps_the_connection() -> None:
    """The usual case is untouched: a body that came, then the next request."""
    protocol, transport, state = connected()
    protocol.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    await settle(state)
    protocol.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    await settle(state)
    assert statuses(bytes(transport.written)) == [b"200", b"200"]
    assert b"abc|host,content-length" in transport.written
    assert not transport.is_closing()
    protocol.connection_lost(None)


async def test_a_pipelined_body_is_not_timed_while_the_request_waits_its_turn() -> None:
    """A slow first request, then a pipelined POST whose body comes after the body's
    deadline but while the POST still waits: both answered, in order. Before, the 408
    came first, in the slow request's place, and its answer was lost."""
    protocol, transport, state = connected()
    protocol.data_received(
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
    )
    await asyncio.sleep(BODY_TIMEOUT * 1.5)
    protocol.data_received(b"hello")
    await asyncio.sleep(0.4)
    await settle(state)
    assert statuses(bytes(transport.written)) == [b"200", b"200"]
    assert b"hello|host,content-length" in transport.written
    protocol.connection_lost(None)


async def test_an_expect_100_continue_body_is_timed_from_the_100() -> None:
    """The app asks for the body 0.3 s after the head (three deadlines): the client,
    rightly waiting for 100 Continue, sends it then and gets its answer, not a 408."""
    protocol, transport, state = connected()
    protocol.data_received(
        b"POST /late HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    for _ in range(100):
        if b"100 Continue" in transport.written:
            break
        await asyncio.sleep(0.01)
    assert statuses(bytes(transport.written)) == [b"100"]
    protocol.data_received(b"hello")
    await settle(state)
    assert statuses(bytes(transport.written)) == [b"100", b"200"]
    protocol.connection_lost(None)


async def test_a_body_that_does_not_come_is_still_cut() -> None:
    protocol, transport, state = connected()
    protocol.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe")
    await asyncio.sleep(BODY_TIMEOUT * 3)
    await settle(state)
    assert statuses(bytes(transport.written)) == [b"408"]
    protocol.connection_lost(None)


async def test_trailer_fields_are_refused_not_added_to_the_headers() -> None:
    """Second protocol review: ``Authorization`` as a trailer of a chunked body reached
    the running request's ``scope["headers"]`` (a 200 where the head had none)."""
    protocol, transport, state = connected()
    protocol.data_received(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nAuthorization: Bearer stolen\r\n\r\n"
    )
    await settle(state)  # the app learnt at once that the body ends there
    assert statuses(bytes(transport.written)) == [b"400"]
    assert transport.eof
    assert b"authorization" not in transport.written
    assert b'"code":"malformed_request"' in transport.written
    protocol.connection_lost(None)


async def test_a_chunked_body_is_bounded_on_the_wire() -> None:
    """Chunks (or trailer lines) beyond the body limit plus the head limit: 413, closed.
    Before, nothing counted them: one connection grew the process by hundreds of MB."""
    protocol, transport, state = connected()
    protocol.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(20):
        protocol.data_received(b"400\r\n" + b"a" * 1024 + b"\r\n")
    await settle(state)
    assert statuses(bytes(transport.written)) == [b"413"]
    assert transport.eof
    protocol.connection_lost(None)


async def test_a_pipelined_head_refused_while_an_answer_is_owed_does_not_take_its_place() -> None:
    """Second protocol review: a slow request, then a pipelined head that never ends;
    its 408 was written in place of the slow request's answer, which was lost. Now the
    answer is written, with ``connection: close``, and the connection ends."""
    protocol, transport, state = connected(head_timeout=0.1)
    protocol.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.01)
    protocol.data_received(b"GET /slow HTTP/1.1\r\nHo")  # and no more of it
    await asyncio.sleep(0.5)
    await settle(state)
    assert statuses(bytes(transport.written)) == [b"200"]
    assert b"connection: close" in transport.written.lower()
    assert transport.closed
    protocol.connection_lost(None)


def answer_json(written: bytes) -> tuple[bytes, dict[str, Any]]:
    """The head and the JSON body of the only answer written."""
    head, _, body = written.partition(b"\r\n\r\n")
    parsed: dict[str, Any] = json.loads(body)
    return head.lower(), parsed


async def test_a_malformed_head_is_a_json_400() -> None:
    """uvicorn answered what httptools could not parse in plain text; every other
    refusal of authgate is JSON in the API's error shape."""
    protocol, transport, state = connected()
    protocol.data_received(b"GET /echo HTTP/1.1\r\nHo st: x\r\n\r\n")
    await settle(state)
    head, body = answer_json(bytes(transport.written))
    assert head.startswith(b"http/1.1 400 bad request")
    assert b"content-type: application/json" in head
    assert b"connection: close" in head
    assert body["status"] == 400
    assert body["code"] == "malformed_request"
    assert body["message"] == "Malformed HTTP request"
    assert transport.eof
    protocol.connection_lost(None)


async def test_broken_chunk_framing_ends_the_body_at_once() -> None:
    """A chunk size that is not hex, while the app reads the body: the app learns at
    once that the body will not come, and the client gets a JSON 400 now, not after
    the body's deadline (nor, as with uvicorn's own answer, a plain-text one)."""
    protocol, transport, state = connected()
    protocol.data_received(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    )
    await asyncio.sleep(0)
    protocol.data_received(b"zz\r\nhello\r\n")
    await asyncio.wait_for(settle(state), BODY_TIMEOUT / 2)
    assert statuses(bytes(transport.written)) == [b"400"]
    _, body = answer_json(bytes(transport.written))
    assert body["code"] == "malformed_request"
    assert b"hello|" not in transport.written  # the app never took the body as whole
    protocol.connection_lost(None)


async def test_an_oversized_head_is_a_json_431() -> None:
    protocol, transport, state = connected()
    protocol.data_received(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000)
    await settle(state)
    head, body = answer_json(bytes(transport.written))
    assert head.startswith(b"http/1.1 431 request header fields too large")
    assert body["status"] == 431
    assert body["code"] == "request_header_fields_too_large"
    assert body["timestamp"].endswith("+00:00") or body["timestamp"].endswith("Z")
    protocol.connection_lost(None)


async def test_a_queued_requests_broken_body_leaves_the_answers_before_it() -> None:
    """Diff review: pipelined requests, then a chunked POST whose framing breaks, in one
    read. The 400 was written at once, in the place of the answers still owed (the
    client took it for the first one's), and the server logged a traceback as those
    answers found the connection half-closed. Now each earlier request is answered, in
    order, then the 400, with ``connection: close``."""
    protocol, transport, state = connected()
    protocol.data_received(
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nqq\r\n"
    )
    protocol.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")  # dropped, unparsed
    for _ in range(200):
        await settle(state)
        if len(statuses(bytes(transport.written))) == 3:
            break
        await asyncio.sleep(0.01)
    written = bytes(transport.written)
    assert statuses(written) == [b"200", b"200", b"400"]
    last = written[written.rindex(b"HTTP/1.1 400") :]
    head, body = answer_json(last)
    assert b"connection: close" in head
    assert body["code"] == "malformed_request"
    protocol.connection_lost(None)


async def test_an_upgrade_request_is_answered_as_http_without_a_warning() -> None:
    """The log review: UTMStack v10's nginx sends ``Upgrade: websocket`` on every
    forward-auth check, and uvicorn warned twice for each ("Unsupported upgrade
    request", "No supported WebSocket library detected"), as ``authgate serve`` runs it
    (``ws="none"``). The request is answered as plain HTTP/1.1, with nothing logged."""
    config = Config(app=app, log_level="warning", access_log=False, ws="none")
    config.load()
    state = ServerState()
    make = bounded_head_protocol(max_head_bytes=8192, head_timeout=10.0)
    protocol = make(config=config, server_state=state, app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    logged: list[logging.LogRecord] = []
    recorder = logging.Handler(logging.DEBUG)
    recorder.emit = logged.append  # type: ignore[method-assign, assignment]
    protocol.logger.addHandler(recorder)  # uvicorn's loggers do not propagate to the root
    try:
        protocol.data_received(
            b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        await settle(state)
    finally:
        protocol.logger.removeHandler(recorder)
    assert statuses(bytes(transport.written)) == [b"200"]
    assert [r.getMessage() for r in logged if r.levelno >= logging.WARNING] == []
