"""EncodedHeaders and the protocol that writes them: the bytes on the wire are exactly
uvicorn's, and nothing that uvicorn would refuse (header injection) gets through."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from uvicorn.server import ServerState

from authgate.api.encoded_headers import EncodedHeaders
from authgate.cli.http_protocol import ENCODED_CYCLES, EncodedCycle, bounded_head_protocol

HEADERS = [
    (b"x-auth-user", b"alice"),
    (b"x-auth-roles", b"ROLE_ADMIN,ROLE_USER"),
    (b"x-auth-permissions", b""),
    (b"content-length", b"0"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]


class _Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class _Flow:
    write_paused = False


def _cycle(kind: type[RequestResponseCycle], *, keep_alive: bool, method: str = "GET") -> Any:
    cycle = kind(
        scope={"method": method},  # type: ignore[typeddict-item]
        transport=_Transport(),  # type: ignore[arg-type]
        flow=_Flow(),  # type: ignore[arg-type]
        logger=None,  # type: ignore[arg-type]
        access_logger=None,  # type: ignore[arg-type]
        access_log=False,
        default_headers=[(b"date", b"Sat, 05 Dec 2026 23:00:00 GMT")],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )
    # The request was read whole, as a GET's is before its app runs (an answer given
    # while the body is still coming says connection: close: tests/test_http_protocol_body).
    cycle.more_body = False
    return cycle


async def _answer(cycle: Any, headers: Any, body: bytes = b"") -> bytes:
    await cycle.send({"type": "http.response.start", "status": 200, "headers": headers})
    await cycle.send({"type": "http.response.body", "body": body})
    assert cycle.response_complete
    return bytes(cycle.transport.written)


@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_the_bytes_are_uvicorns(keep_alive: bool, method: str) -> None:
    encoded = EncodedHeaders(HEADERS).extended([(b"ratelimit", b'"key";r=9;t=60')])
    plain = [*HEADERS, (b"ratelimit", b'"key";r=9;t=60')]
    uvicorns = _cycle(RequestResponseCycle, keep_alive=keep_alive, method=method)
    theirs = await _answer(uvicorns, plain)
    cycle = _cycle(EncodedCycle, keep_alive=keep_alive, method=method)
    ours = await _answer(cycle, encoded)
    assert ours == theirs
    assert b"ratelimit: " in ours
    assert b"x-auth-permissions: \r\n" in ours
    assert cycle.transport.closed is (not keep_alive)


async def test_a_body_must_match_the_declared_length() -> None:
    headers = EncodedHeaders([(b"content-length", b"5")])
    assert (await _answer(_cycle(EncodedCycle, keep_alive=True), headers, b"hello")).endswith(
        b"\r\n\r\nhello"
    )
    with pytest.raises(RuntimeError, match="shorter than Content-Length"):
        await _answer(_cycle(EncodedCycle, keep_alive=True), headers, b"hi")


async def test_plain_header_lists_still_go_through_uvicorn() -> None:
    theirs = await _answer(_cycle(RequestResponseCycle, keep_alive=True), HEADERS)
    assert await _answer(_cycle(EncodedCycle, keep_alive=True), HEADERS) == theirs
    with pytest.raises(RuntimeError, match="Invalid HTTP header value"):
        await _answer(_cycle(EncodedCycle, keep_alive=True), [(b"x-a", b"1\r\nx-b: 2")])


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ((b"x-auth-user", b"alice\r\nx-auth-roles: ROLE_ADMIN"), "invalid value"),  # injection
        ((b"x-auth-user", b"alice\n"), "invalid value"),
        ((b"x-auth-user", b"al\x00ice"), "invalid value"),
        ((b"X-Auth-User", b"alice"), "invalid header name"),  # not lower-case
        ((b"x auth", b"alice"), "invalid header name"),
        ((b"x-auth:user", b"alice"), "invalid header name"),
        ((b"", b"alice"), "invalid header name"),
        ((b"connection", b"close"), "left to the server"),  # framing: the server's business
        ((b"transfer-encoding", b"chunked"), "left to the server"),
        ((b"content-length", b"-1"), "one content-length header"),
    ],
)
def test_what_uvicorn_would_refuse_is_refused_when_built(
    bad: tuple[bytes, bytes], why: str
) -> None:
    headers = [bad] if bad[0] == b"content-length" else [(b"content-length", b"0"), bad]
    with pytest.raises(ValueError, match=why):
        EncodedHeaders(headers)
    with pytest.raises(ValueError, match=why):
        EncodedHeaders([(b"content-length", b"0")]).extended([bad])


def test_a_content_length_is_required_once() -> None:
    with pytest.raises(ValueError, match="need a content-length"):
        EncodedHeaders([(b"x-a", b"1")])
    with pytest.raises(ValueError, match="one content-length header"):
        EncodedHeaders([(b"content-length", b"0"), (b"content-length", b"0")])
    with pytest.raises(ValueError, match="a second content-length"):
        EncodedHeaders([(b"content-length", b"0")]).extended([(b"content-length", b"1")])


def test_the_pairs_and_their_encoding_cannot_drift_apart() -> None:
    headers = EncodedHeaders(HEADERS)
    assert list(headers) == HEADERS  # any ASGI server reads the pairs
    assert headers.encoded == b"".join(b"%s: %s\r\n" % pair for pair in HEADERS)
    with pytest.raises((TypeError, AttributeError)):
        headers.append((b"x-late", b"1"))  # type: ignore[attr-defined]
    longer = headers.extended([(b"x-late", b"1")])
    assert headers.encoded.count(b"\r\n") == len(HEADERS)  # the original is unchanged
    assert list(longer) == [*HEADERS, (b"x-late", b"1")]
    assert longer.encoded == headers.encoded + b"x-late: 1\r\n"


async def test_authgates_protocol_builds_encoded_cycles() -> None:
    """``BoundedHeadProtocol`` runs uvicorn's own ``on_headers_complete`` building
    ``EncodedCycle``s (a uvicorn upgrade that builds cycles differently fails here, rather
    than silently writing every header through uvicorn's loop again)."""
    written: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = EncodedHeaders([(b"content-length", b"2"), (b"x-auth-user", b"alice")])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    class Recorder(asyncio.Transport):
        def write(self, data: Any) -> None:
            written.append(bytes(data))

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
                name, default
            )

        def is_closing(self) -> bool:
            return False

        def close(self) -> None:
            pass

    config = Config(app=app, log_level="warning", access_log=False, proxy_headers=False)
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Sat, 05 Dec 2026 23:00:00 GMT")]  # the server's tick
    protocol = bounded_head_protocol(max_head_bytes=8192, head_timeout=10.0)(
        config=config, server_state=state, app_state={}
    )
    protocol.connection_made(Recorder())
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert ENCODED_CYCLES
    assert type(protocol.cycle) is EncodedCycle
    await asyncio.gather(*state.tasks)
    head = written[0]
    assert head == (
        b"HTTP/1.1 200 OK\r\ndate: Sat, 05 Dec 2026 23:00:00 GMT\r\n"
        b"content-length: 2\r\nx-auth-user: alice\r\n\r\n"
    )
    assert written[1:] == [b"ok"]
    protocol.connection_lost(None)
