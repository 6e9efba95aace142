"""The paths a request is read as: the full path, and the route path the app routes on.

Starlette routes on the path without ``root_path`` (its ``get_route_path``), which
``FastAPI(root_path=…)``, ``uvicorn --root-path`` and every ``Mount`` set. Behind
``FastAPI(root_path="/svc")``, ``/svc/admin/x`` and ``/admin/x`` reach the same route;
behind ``uvicorn --root-path /svc`` every path carries ``/svc``. Rules may have been
written for either form, so when the two differ a request is held to both readings,
the principle authgate's forward-auth applies to the spellings of a path in case: it
must meet the rules of each, and is exempt only if each reading is.

When the readings are equal (no ``root_path``, or a path outside it) there is one.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.types import Scope

__all__ = ["path_readings", "route_path", "uri_readings"]

# Bytes a header value cannot carry as they are (controls, space, non-ASCII): sent to
# authgate percent-encoded, which it decodes to the same path.
_NOT_VISIBLE_ASCII = re.compile(rb"[^\x21-\x7e]")
# A decoded path, quoted back: only what a path segment may hold unquoted stays.
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


def route_path(scope: Scope) -> str:
    """The path Starlette routes on: ``path`` minus ``root_path`` when it starts with it
    at a segment boundary, else ``path`` (as ``starlette._utils.get_route_path``,
    private there). The root path itself reads as ``/``: Starlette has no route for
    the empty path and redirects it there."""
    path = str(scope["path"])
    root = str(scope.get("root_path") or "")
    if not root or not path.startswith(root):
        return path
    rest = path[len(root) :]
    if not rest:
        return "/"
    return rest if rest.startswith("/") else path


def path_readings(scope: Scope) -> tuple[str, ...]:
    """The decoded full path, then the route path when it differs."""
    path = str(scope["path"])
    route = route_path(scope)
    return (path,) if route == path else (path, route)


def uri_readings(scope: Scope) -> tuple[str, ...]:
    """The URIs to ask authgate about, one per reading of :func:`path_readings`, each
    with the query: the path as sent (``raw_path``), and for the route reading the
    same bytes without ``root_path``'s. Where the sent bytes do not start with them
    (an encoded root path), the decoded route path, percent-quoted, is asked about."""
    raw_path = scope.get("raw_path")
    full = _header_safe(raw_path) if raw_path else _quoted(str(scope["path"]))
    uris = [full]
    readings = path_readings(scope)
    if len(readings) == 2:
        uris.append(_route_uri(raw_path, str(scope.get("root_path")), readings[1]))
    query = scope.get("query_string", b"")
    suffix = "?" + _header_safe(query) if query else ""
    return tuple(uri + suffix for uri in uris)


def _route_uri(raw_path: bytes | None, root: str, route: str) -> str:
    prefix = root.encode("utf-8", "surrogatepass")
    if raw_path and raw_path.startswith(prefix + b"/"):
        return _header_safe(raw_path[len(prefix) :])
    return _quoted(route)


def _header_safe(raw: bytes) -> str:
    """``raw`` as sent, but with every byte a header value cannot hold percent-encoded
    (a server that passes ``/café`` through as UTF-8 bytes: httpx refuses non-ASCII
    header values, which was a 500)."""
    return _NOT_VISIBLE_ASCII.sub(lambda byte: b"%%%02X" % byte[0][0], raw).decode("ascii")


def _quoted(path: str) -> str:
    """A decoded path (no ``raw_path``) quoted back: a decoded ``?`` or ``%`` stays part
    of the path instead of starting a query or an escape."""
    return quote(path, safe=_PATH_SAFE, errors="surrogatepass")
