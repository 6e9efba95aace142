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

from urllib.parse import quote

from starlette.types import Scope

__all__ = ["path_readings", "route_path", "uri_readings"]


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
    full = raw_path.decode("latin-1") if raw_path else str(scope["path"])
    uris = [full]
    readings = path_readings(scope)
    if len(readings) == 2:
        uris.append(_route_uri(raw_path, str(scope.get("root_path")), readings[1]))
    query = scope.get("query_string", b"")
    suffix = "?" + query.decode("latin-1") if query else ""
    return tuple(uri + suffix for uri in uris)


def _route_uri(raw_path: bytes | None, root: str, route: str) -> str:
    prefix = root.encode("utf-8", "surrogatepass")
    if raw_path and raw_path.startswith(prefix + b"/"):
        return raw_path[len(prefix) :].decode("latin-1")
    return quote(route, safe="/", errors="surrogatepass")
