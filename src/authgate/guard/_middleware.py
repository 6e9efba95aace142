"""``GuardMiddleware``: every HTTP request and websocket handshake must be authenticated.

    app.add_middleware(
        GuardMiddleware, guard=guard, exempt=["/health", "/docs/"], scopes={"/admin/": ["admin"]}
    )

Paths are matched against the full path (``scope["path"]``, also inside a mounted app)
and, when the app has a root path (``FastAPI(root_path=…)``, ``uvicorn --root-path``, a
``Mount``), against the route path Starlette routes on too (``_paths``): a request must
meet the ``scopes`` of both readings, and is exempt only if both readings are. Add the
middleware with ``app.add_middleware``: ``FastAPI(root_path=…)`` is set on the scope as
the request enters the app, so a middleware wrapped around the app never sees it.

A ``scopes`` key is a prefix of whole segments, with or without its final ``/``:
``/admin`` and ``/admin/`` both cover ``/admin`` and ``/admin/x``, not ``/adminx``; the
longest matching prefix decides. An ``exempt`` entry ending in ``/`` is such a prefix
(``/docs/`` matches ``/docs`` and ``/docs/x``); any other entry is one exact path, so a
forgotten slash fails closed. A path with ``.``, ``..`` or empty segments is never
exempt, so ``/health/../admin`` cannot slip through.

The caller is stored in the scope: ``request.state.principal``, or ``principal_of``.
Refused HTTP requests get authgate's JSON error; a refused websocket handshake gets it
too where the server supports denial responses, else a close with code 1008 (1013
while authgate is unavailable). Lifespan messages pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from authgate.guard._config import GuardConfigError
from authgate.guard._errors import GuardError
from authgate.guard._guard import Guard, remember_principal
from authgate.guard._paths import path_readings
from authgate.guard._principal import Requirement

__all__ = ["GuardMiddleware"]

_WS_POLICY_VIOLATION = 1008
_WS_TRY_AGAIN_LATER = 1013
_NOTHING = Requirement()


class GuardMiddleware:
    """Authenticates every ``http`` and ``websocket`` request that is not exempt."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        guard: Guard,
        exempt: Iterable[str] = (),
        scopes: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.app = app
        self._guard = guard
        self._exempt = tuple(_checked(path) for path in exempt)
        rules: dict[str, Requirement] = {}
        for prefix, names in (scopes or {}).items():
            segments = _segment_prefix(_checked(prefix))
            if segments in rules:
                raise GuardConfigError(f"scopes names the prefix {segments!r} twice")
            rules[segments] = Requirement.of(scopes=names)
        self._rules = sorted(rules.items(), key=lambda rule: len(rule[0]), reverse=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        paths = path_readings(scope)
        if all(self._is_exempt(path) for path in paths):
            await self.app(scope, receive, send)
            return
        try:
            principal = await self._guard.authenticate(scope)
            for path in paths:
                self._requirement(path).check(principal)
        except GuardError as error:
            await self._refuse(error, scope, receive, send)
            return
        remember_principal(scope, principal, guard=self._guard)
        await self.app(scope, receive, send)

    def _is_exempt(self, path: str) -> bool:
        return _is_normal(path) and any(_matches(path, entry) for entry in self._exempt)

    def _requirement(self, path: str) -> Requirement:
        for prefix, requirement in self._rules:
            if _matches(path, prefix):
                return requirement
        return _NOTHING

    async def _refuse(self, error: GuardError, scope: Scope, receive: Receive, send: Send) -> None:
        response = self._guard.error_response(error, path=str(scope["path"]))
        if scope["type"] == "websocket" and "websocket.http.response" not in scope.get(
            "extensions", {}
        ):
            code = _WS_TRY_AGAIN_LATER if error.status == 503 else _WS_POLICY_VIOLATION
            await send({"type": "websocket.close", "code": code, "reason": ""})
            return
        # For a websocket, Starlette sends this as a denial response ("websocket.http.*").
        await response(scope, receive, send)


def _checked(path: str) -> str:
    if not path.startswith("/"):
        raise GuardConfigError(f"paths start with '/': {path!r}")
    return path


def _segment_prefix(prefix: str) -> str:
    """``prefix`` ending in ``/``, so that it matches whole segments only (``_matches``):
    a rule for ``/admin`` left out ``/admin/users``, the very paths it meant to cover."""
    return prefix if prefix.endswith("/") else prefix + "/"


def _matches(path: str, entry: str) -> bool:
    if entry.endswith("/"):
        return path.startswith(entry) or path == entry[:-1]
    return path == entry


def _is_normal(path: str) -> bool:
    segments = path.split("/")[1:]
    inner, last = segments[:-1], segments[-1] if segments else ""
    return all(segment not in ("", ".", "..") for segment in inner) and last not in (".", "..")
