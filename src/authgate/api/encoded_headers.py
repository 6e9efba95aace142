"""Response headers encoded for HTTP/1.1 once, not on every response.

uvicorn turns an ASGI response's headers into bytes on every response, in Python: per
header two regular-expression checks, a ``lower()``, three comparisons and four list
items (~0.35 us a header, measured). A forward-auth answer carries a dozen headers
(identity, security, ``Cache-Control``), the same ones for every request of a caller,
so that loop was ~4 us of the ~20 us verify spends in the server beyond a bare
Starlette hello's two headers.

:class:`EncodedHeaders` is an ordinary ASGI header sequence (a tuple of ``(name,
value)`` byte pairs: every ASGI server, test client and middleware reads it as
such) that also carries its HTTP/1.1 encoding, ``name: value\\r\\n`` per header in the
same order, checked once when it is built with the same rules uvicorn applies. It is a
tuple, so the pairs and their encoding can never disagree. authgate's HTTP protocol
(:mod:`authgate.cli.http_protocol`) writes that encoding as is; any other server
encodes the pairs itself. The bytes on the wire are identical either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# uvicorn's own checks (uvicorn.protocols.http.httptools_impl: HEADER_RE,
# HEADER_VALUE_RE): a name is an HTTP token, a value holds no control character but tab.
_FORBIDDEN_IN_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_FORBIDDEN_IN_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
# Headers that change how the server frames the response: left to the server's own
# handling (an EncodedHeaders refuses them).
_FRAMING = frozenset({b"transfer-encoding", b"connection"})

Pair = tuple[bytes, bytes]


class EncodedHeaders(tuple[Pair, ...]):
    """ASGI response headers with their HTTP/1.1 encoding (``encoded``) and the
    ``Content-Length`` they declare (``content_length``), which they must include.

    Raises ``ValueError`` for a name that is not lower-case or not a token, a value
    with a control character (no header injection), a missing or malformed
    ``Content-Length``, or a framing header (``Transfer-Encoding``, ``Connection``).
    """

    encoded: bytes
    content_length: int

    def __new__(cls, headers: Iterable[Pair]) -> EncodedHeaders:
        self = super().__new__(cls, headers)
        encoded, content_length = _encode(self)
        if content_length is None:
            raise ValueError("EncodedHeaders need a content-length header")
        self.encoded = encoded
        self.content_length = content_length
        return self

    def extended(self, more: Iterable[Pair]) -> EncodedHeaders:
        """These headers followed by ``more`` (checked the same way; only ``more`` is
        encoded anew)."""
        extra = tuple(more)
        encoded, content_length = _encode(extra)
        if content_length is not None:
            raise ValueError("a second content-length header")
        combined = tuple.__new__(EncodedHeaders, (*self, *extra))
        combined.encoded = self.encoded + encoded
        combined.content_length = self.content_length
        return combined


def _encode(headers: tuple[Pair, ...]) -> tuple[bytes, int | None]:
    lines: list[bytes] = []
    content_length: int | None = None
    for name, value in headers:
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise ValueError("header names and values are bytes")
        if not name or name != name.lower() or _FORBIDDEN_IN_NAME.search(name):
            raise ValueError(f"invalid header name {name!r}")
        if _FORBIDDEN_IN_VALUE.search(value):
            raise ValueError(f"invalid value of header {name!r}")
        if name in _FRAMING:
            raise ValueError(f"{name!r} is left to the server")
        if name == b"content-length":
            if content_length is not None or not value.isdigit():
                raise ValueError("one content-length header, a decimal number")
            content_length = int(value)
        lines.append(b"%s: %s\r\n" % (name, value))
    return b"".join(lines), content_length


def encode_plain_fields(headers: Iterable[Pair]) -> bytes | None:
    """Header lines as uvicorn writes them (names lower-cased), or None when a header
    is invalid or frames the response (then uvicorn's own path decides)."""
    lines: list[bytes] = []
    for name, value in headers:
        if _FORBIDDEN_IN_NAME.search(name) or _FORBIDDEN_IN_VALUE.search(value):
            return None
        name = name.lower()
        if name in _FRAMING or name == b"content-length":
            return None
        lines.append(b"%s: %s\r\n" % (name, value))
    return b"".join(lines)
