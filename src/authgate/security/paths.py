"""One reading of an upstream request (method and path) for forward-auth.

A reverse proxy asks authgate about a request before its upstream serves it; a rule
protects the upstream only if authgate and the upstream agree on which resource the
request names. Servers read request targets differently: servlet containers (Tomcat,
Jetty) drop ``;params`` from every segment before resolving ``..`` (so
``/public/..;/admin/x`` is ``/admin/x`` there), others resolve no dot segment at all
(Starlette, Express, Go's mux: ``/admin/..;/users`` is served by whatever is mounted at
``/admin``), Windows servers drop trailing dots and spaces of a segment (``/admin./x``),
some merge ``//`` and some do not, many match paths case-insensitively, some decode
``%2f`` into a separator and others refuse it. No normal form is right for all of them:
resolving ``..`` is wrong for the second kind, keeping it for the first. So a path is
accepted only when every one of these readings is the same path, and refused otherwise
(as Spring Security's ``StrictHttpFirewall`` refuses paths that are not normalized):

1. the query is cut off; an absolute-form target (``http://host/p``) keeps its path;
2. percent-encoding is decoded once, as UTF-8;
3. what is left must already be normal: no ``.`` or ``..`` segment, no empty segment
   (``//``; one trailing slash is kept), no ``;`` (path parameters), no segment ending
   in a dot or a space.

:class:`AmbiguousUpstreamPath` (its ``reason`` for the audit trail) refuses the rest:

* encoded separators and delimiters (``%2f``, ``%5c``, ``%3b``, ``%3f``, ``%23``) and
  IIS-style ``%uXXXX`` escapes;
* an escape still present after the one decode (``%252e`` is ``%2e``): a server that
  decodes twice would read something else;
* backslashes, ``#``, NUL and other control characters, bytes that are not UTF-8;
* dot segments, empty segments, ``;params``, trailing dots and spaces (3. above).

Real clients send none of these: browsers, curl and HTTP libraries remove dot segments
before sending (RFC 3986, 5.2.4).

The method must be written in upper case (:func:`canonical_method`: upstreams read
``get`` differently). Frameworks may run another method than the one sent, named by a
method override (``?_method=DELETE`` on a POST, ``X-HTTP-Method-Override``):
:func:`query_method_overrides` finds those of the query, :func:`override_method` reads
what one names. The path keeps its case (it is what the usage log and
the audit trail show); :func:`case_folded` gives the form rules are matched on by
default, folding the non-ASCII letters Java and .NET fold to ASCII ones (the long s,
the dotless i, the dotted capital I, the Kelvin sign) as well. Pure functions without
I/O; the reading of a path is remembered (bounded).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Final
from urllib.parse import unquote_plus, unquote_to_bytes

from authgate.exceptions import AmbiguousUpstreamPath, AmbiguousUpstreamRequest, ValidationFailed
from authgate.reasons import Reason

MAX_TARGET_LENGTH: Final = 8192
MAX_METHOD_LENGTH: Final = 20

_ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/]*")
# Separators hidden from a proxy by encoding, and IIS's %u escapes (%u002e is a dot).
# %3f and %23: a server that decodes before it splits off the query or the fragment.
_ENCODED_SEPARATOR = re.compile(r"%(?:2[fF]|5[cC]|3[bBfF]|23|[uU][0-9A-Fa-f]{4})")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# After decoding: C0 and C1 controls, DEL, backslash.
_UNSAFE_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def canonical_path(target: str) -> str:
    """The path of a request target as a proxy passes it on (nginx's
    ``$request_uri``, Traefik's and Caddy's ``X-Forwarded-Uri``): one character per
    byte of the request line, as ASGI servers decode header values (latin-1).

    Raises ``AmbiguousUpstreamPath`` for a target that servers may read differently.
    """
    return _canonical(target.partition("?")[0])


def canonical_text_path(path: str) -> str:
    """:func:`canonical_path` of a path written as text (a rule's prefix in the
    settings, which may hold any Unicode character) rather than received as bytes."""
    return canonical_path(path.encode("utf-8").decode("latin-1"))


def case_folded(path: str) -> str:
    """The form a canonical path is matched on when matching ignores case: lower case,
    with the letters that other platforms' case-insensitive comparisons take for ASCII
    ones folded to those (Java's ``equalsIgnoreCase`` finds ``/\u017fecret``, with a
    long s, equal to ``/secret``; Python's ``lower()`` keeps the long s)."""
    if path.isascii():
        return path.lower()
    return path.translate(_ASCII_CASE_LOOKALIKES).lower()


# The non-ASCII letters whose upper or lower case (in Java, .NET or Python) is an ASCII
# letter: the dotless i and the long s (upper case I, S), the dotted capital I (Java's
# lower case i) and the Kelvin sign (lower case k).
_ASCII_CASE_LOOKALIKES: Final = str.maketrans(
    {"\u0131": "i", "\u017f": "s", "\u0130": "i", "\u212a": "k"}
)


def segment_prefixes(path: str) -> Iterator[str]:
    """The prefixes of a canonical path that end on a segment boundary, longest first:
    ``/a/b/`` gives ``/a/b``, ``/a``, ``/``. A rule's prefix covers exactly these paths."""
    end = len(path) - 1 if len(path) > 1 and path.endswith("/") else len(path)
    while end > 1:
        yield path[:end]
        end = path.rfind("/", 0, end)
    yield "/"


def canonical_method(value: str) -> str:
    """The method of an upstream request, which must be written in upper case.

    Methods are case-sensitive (RFC 9110, 9.1) and upstreams read another spelling
    differently: to Go's ``net/http`` and Starlette ``get`` is not ``GET`` (a handler
    branching on ``GET`` takes it for a write), Symfony and Laravel upper-case it (so
    ``delete`` deletes). Caddy and Traefik pass a client's ``get`` on unchanged (nginx
    refuses it itself). No reading is right for every upstream, so a method with a
    lower-case letter is refused (``AmbiguousUpstreamRequest``, reason
    ``method_not_upper_case``), as an ambiguous path is; anything that is not a method
    name (letters only, at most 20) is refused too (``ValidationFailed``)."""
    known = _COMMON_METHODS.get(value)
    if known is not None:
        return known
    method = value.strip()
    if not (0 < len(method) <= MAX_METHOD_LENGTH and method.isascii() and method.isalpha()):
        raise ValidationFailed("The upstream method is not an HTTP method")
    if not method.isupper():
        raise AmbiguousUpstreamRequest(
            "The upstream method is not in upper case: upstreams read it differently "
            "(as another method, or as the upper-case one)",
            reason=Reason.METHOD_NOT_UPPER_CASE,
        )
    return method


def override_method(value: str) -> str | None:
    """The method a method override (``_method=delete``, ``X-HTTP-Method-Override``)
    names, upper-cased as the frameworks that honour one upper-case it (Symfony and
    Laravel, Rack, Express's ``method-override``); ``None`` when it names none (empty,
    blanks, anything but 1 to 20 letters), which Symfony refuses and others ignore."""
    if 0 < len(value) <= MAX_METHOD_LENGTH and value.isascii() and value.isalpha():
        return value.upper()
    return None


def query_method_overrides(target: str) -> tuple[str, ...]:
    """The values of the target's query parameters that a framework may take for a
    method override: ``_method`` in any case (Laravel and Symfony read it from the query
    as well as the form, Express's ``method-override('_method')`` from the query),
    percent-decoded, ``+`` as a space, also as PHP names it (``.method``, ``[method``,
    leading spaces dropped) and as an array (``_method[]``). Pairs are split at ``&``
    and ``;``. Cheap when the query mentions no ``method`` and has no escape."""
    _, mark, query = target.partition("?")
    if not mark or _OVERRIDE_HINT.search(query) is None:
        return ()
    values = []
    for pair in _QUERY_SEPARATOR.split(query):
        name, _, value = pair.partition("=")
        name = unquote_plus(name).lstrip(" ").lower()
        if name[:1] in _PHP_UNDERSCORES and name[1:7] == "method" and name[7:8] in ("", "["):
            values.append(unquote_plus(value))
    return tuple(values)


_OVERRIDE_HINT: Final = re.compile(r"method|%", re.IGNORECASE)
_QUERY_SEPARATOR: Final = re.compile(r"[&;]")
# PHP drops a parameter name's leading spaces and turns a "." or " " (and a "[" without
# its "]") into "_".
_PHP_UNDERSCORES: Final = ("_", ".", "[")


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
    return _resolved(text)


def _decoded(path: str) -> str:
    try:
        raw = path.encode("latin-1")
    except UnicodeEncodeError:  # not the latin-1 view of bytes from a request line
        raise _refused(Reason.PATH_NOT_BYTES) from None
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _refused(Reason.PATH_NOT_UTF8) from None


def _resolved(text: str) -> str:
    """``text`` itself (with a leading slash), if every server reads it as it is."""
    path = text if text.startswith("/") else "/" + text
    if ";" in path:  # servlet containers drop ;params, other servers keep them
        raise _refused(Reason.PATH_PARAMETER)
    if path == "/":
        return path
    inner = path[1:-1] if path.endswith("/") else path[1:]
    for segment in inner.split("/"):
        if segment in (".", ".."):  # resolved by some servers, not by others
            raise _refused(Reason.PATH_DOT_SEGMENT)
        if not segment:  # "//": merged by some servers, not by others
            raise _refused(Reason.PATH_EMPTY_SEGMENT)
        if segment[-1] in ". ":  # Windows servers drop trailing dots and spaces
            raise _refused(Reason.PATH_TRAILING_DOT)
    return path


def _refused(reason: Reason) -> AmbiguousUpstreamPath:
    return AmbiguousUpstreamPath(
        "The upstream path may be read differently by different servers (dot or empty "
        "segments, ;params, trailing dots, encoded separators, double encoding or "
        "control characters)",
        reason=reason,
    )
