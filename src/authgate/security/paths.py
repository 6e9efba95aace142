"""One canonical reading of an upstream request (method and path) for forward-auth.

A reverse proxy asks authgate about a request before its upstream serves it; a rule
protects the upstream only if authgate and the upstream agree on which resource the
request names. Servers read request targets differently: servlet containers (Tomcat,
Jetty) drop ``;params`` from every segment before resolving ``..`` (so
``/public/..;/admin/x`` is ``/admin/x`` there), Windows servers drop trailing dots and
spaces of a segment (``/admin./x``), many frameworks match paths case-insensitively,
some decode ``%2f`` into a separator and others refuse it. So rules are matched on one
canonical path, at least as specific as each of these readings, and what cannot be read
one way only is refused:

1. the query is cut off; an absolute-form target (``http://host/p``) keeps its path;
2. percent-encoding is decoded once, as UTF-8;
3. ``;params`` are stripped from every segment (``..;x`` is ``..``);
4. empty and ``.`` segments are dropped, ``..`` removes the segment before it;
5. trailing dots and spaces of a segment are dropped (``admin.`` is ``admin``).

:class:`AmbiguousUpstreamPath` (its ``reason`` for the audit trail) refuses:

* encoded separators (``%2f``, ``%5c``, ``%3b``) and IIS-style ``%uXXXX`` escapes;
* an escape still present after the one decode (``%252e`` is ``%2e``): a server that
  decodes twice would read something else;
* backslashes, ``#``, NUL and other control characters, bytes that are not UTF-8;
* a ``..`` that climbs above the root, a segment of nothing but dots and spaces.

The canonical path keeps its case (it is what the usage log and the audit trail
show); :func:`case_folded` gives the form rules are matched on by default.
Pure functions without I/O; the canonical form of a path is remembered (bounded).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Final
from urllib.parse import unquote_to_bytes

from authgate.exceptions import AmbiguousUpstreamPath, ValidationFailed
from authgate.reasons import Reason

MAX_TARGET_LENGTH: Final = 8192
MAX_METHOD_LENGTH: Final = 20

_ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/]*")
# Separators hidden from a proxy by encoding, and IIS's %u escapes (%u002e is a dot).
_ENCODED_SEPARATOR = re.compile(r"%(?:2[fF]|5[cC]|3[bB]|[uU][0-9A-Fa-f]{4})")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# After decoding: C0 and C1 controls, DEL, backslash.
_UNSAFE_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def canonical_path(target: str) -> str:
    """The canonical path of a request target as a proxy passes it on (nginx's
    ``$request_uri``, Traefik's and Caddy's ``X-Forwarded-Uri``): one character per
    byte of the request line, as ASGI servers decode header values (latin-1).

    Raises ``AmbiguousUpstreamPath`` for a target without one canonical reading.
    """
    return _canonical(target.partition("?")[0])


def canonical_text_path(path: str) -> str:
    """:func:`canonical_path` of a path written as text (a rule's prefix in the
    settings, which may hold any Unicode character) rather than received as bytes."""
    return canonical_path(path.encode("utf-8").decode("latin-1"))


def case_folded(path: str) -> str:
    """The form a canonical path is matched on when matching ignores case."""
    return path.lower()


def segment_prefixes(path: str) -> Iterator[str]:
    """The prefixes of a canonical path that end on a segment boundary, longest first:
    ``/a/b/`` gives ``/a/b``, ``/a``, ``/``. A rule's prefix covers exactly these paths."""
    end = len(path) - 1 if len(path) > 1 and path.endswith("/") else len(path)
    while end > 1:
        yield path[:end]
        end = path.rfind("/", 0, end)
    yield "/"


def canonical_method(value: str) -> str:
    """An HTTP method as rules name it: upper case (``post`` is ``POST``); anything that
    is not a method name (letters only, at most 20) is refused (``ValidationFailed``)."""
    known = _COMMON_METHODS.get(value)
    if known is not None:
        return known
    method = value.strip()
    if not (0 < len(method) <= MAX_METHOD_LENGTH and method.isascii() and method.isalpha()):
        raise ValidationFailed("The upstream method is not an HTTP method")
    return method.upper()


# The usual spellings, answered without checks (the hot path).
_COMMON_METHODS: Final = {
    method: method
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
}


@lru_cache(maxsize=4096)
def _canonical(path: str) -> str:
    if len(path) > MAX_TARGET_LENGTH:
        raise AmbiguousUpstreamPath("The upstream path is too long", reason=Reason.PATH_TOO_LONG)
    absolute = _ABSOLUTE_FORM.match(path)
    if absolute is not None:
        path = path[absolute.end() :]
    if "#" in path:  # a fragment is never sent; servers disagree on what follows it
        raise _refused(Reason.PATH_FRAGMENT)
    if _ENCODED_SEPARATOR.search(path) is not None:
        raise _refused(Reason.PATH_ENCODED_SEPARATOR)
    text = _decoded(path)
    if _ESCAPE.search(text) is not None:
        raise _refused(Reason.PATH_DOUBLE_ENCODED)
    unsafe = _UNSAFE_CHARACTER.search(text)
    if unsafe is not None:
        raise _refused(
            Reason.PATH_BACKSLASH if unsafe.group() == "\\" else Reason.PATH_CONTROL_CHARACTER
        )
    return _resolved(text.split("/"))


def _decoded(path: str) -> str:
    try:
        raw = path.encode("latin-1")
    except UnicodeEncodeError:  # not the latin-1 view of bytes from a request line
        raise _refused(Reason.PATH_NOT_BYTES) from None
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _refused(Reason.PATH_NOT_UTF8) from None


def _resolved(parts: list[str]) -> str:
    segments: list[str] = []
    for part in parts:
        segment = part.partition(";")[0]  # servlet containers drop ;params first
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise _refused(Reason.PATH_ABOVE_ROOT)
            segments.pop()
            continue
        trimmed = segment.rstrip(". ")  # Windows: "admin." and "admin " are "admin"
        if not trimmed:
            raise _refused(Reason.PATH_DOTS_ONLY_SEGMENT)
        segments.append(trimmed)
    directory = bool(segments) and parts[-1].partition(";")[0] in ("", ".", "..")
    return "/" + "/".join(segments) + ("/" if directory else "")


def _refused(reason: Reason) -> AmbiguousUpstreamPath:
    return AmbiguousUpstreamPath(
        "The upstream path has no single canonical form (encoded separators or dots, "
        "double encoding, control characters or a '..' above the root)",
        reason=reason,
    )
