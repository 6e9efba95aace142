"""What forward-auth requires of a caller for an upstream request (method + path).

A reverse proxy (nginx ``auth_request``, Traefik ``ForwardAuth``) asks authgate about
each request to an API that is not authgate's own. Who the caller is comes from the
usual authentication; whether that caller may make *this* request is decided here,
by rules per upstream path prefix and method (``forward_auth_rules``):

* the rule with the longest matching prefix wins; among rules with the same prefix,
  the first whose methods include the request's (a rule without methods takes any);
* a rule requires all its ``scopes`` of an API key (a user's token carries the user's
  full rights), one of its ``roles`` of any caller, or refuses everything
  (``allow = false``);
* a request no rule matches is held to authgate's own rule (API keys need ``write``
  for unsafe methods) or refused, as ``forward_auth_unmatched`` says.

A prefix is a string prefix of the path; one ending in ``/`` also matches the path
without that slash (``/admin/`` matches ``/admin`` and ``/admin/x``, not ``/administer``). It is
matched against the upstream path as the upstream will understand it: without the
query, percent-decoded, with ``.``/``..`` segments resolved and repeated slashes merged,
so ``/public/../admin/x`` or ``/public/%2e%2e/admin/x`` is held to the ``/admin/`` rule
(nginx's ``$request_uri`` is passed raw). The decision for a (method, path) pair is
computed once and remembered (bounded).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from urllib.parse import unquote, urlsplit

from authgate.exceptions import InsufficientScope, PermissionDenied
from authgate.security.principal import SCOPE_WRITE, Principal
from authgate.settings import ForwardAuthRuleSetting

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Unmatched = Literal["authenticated", "deny"]


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a caller needs for one upstream (method, path)."""

    scopes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    allow: bool = True
    rule: str = "default"  # which rule decided (for logs and errors)

    def check(self, principal: Principal) -> None:
        """Nothing when ``principal`` satisfies it; ``PermissionDenied`` otherwise."""
        if not self.allow:
            raise PermissionDenied(
                "No credential may access this upstream path", reason="forward_auth_denied"
            )
        if self.roles and not (self.roles & principal.authorities):
            raise PermissionDenied(
                f"This upstream path needs one of the roles {', '.join(sorted(self.roles))}",
                reason="role_required",
            )
        if principal.scopes is not None and not self.scopes <= principal.scopes:
            missing = ", ".join(sorted(self.scopes - principal.scopes))
            raise InsufficientScope(
                f"This API key lacks the scope {missing} for this upstream request",
                reason="scope_required",
            )


@dataclass(frozen=True, slots=True)
class _Rule:
    prefix: str
    methods: frozenset[str]
    requirement: Requirement

    @property
    def directory(self) -> str | None:
        """``/admin`` for the prefix ``/admin/``."""
        return self.prefix[:-1] if len(self.prefix) > 1 and self.prefix.endswith("/") else None


_WRITE = Requirement(scopes=frozenset({SCOPE_WRITE}), rule="default")
_AUTHENTICATED = Requirement(rule="default")
_DENIED = Requirement(allow=False, rule="default")


class ForwardAuthPolicy:
    def __init__(
        self,
        rules: Iterable[ForwardAuthRuleSetting] = (),
        *,
        unmatched: Unmatched = "authenticated",
        cache_size: int = 4096,
    ) -> None:
        ordered = [
            _Rule(
                prefix=rule.path_prefix,
                methods=frozenset(rule.methods),
                requirement=Requirement(
                    scopes=frozenset(rule.scopes),
                    roles=frozenset(rule.roles),
                    allow=rule.allow,
                    rule=f"{rule.path_prefix} {','.join(rule.methods) or '*'}",
                ),
            )
            for rule in rules
        ]
        # Longest prefix first; sorted() is stable, so equal prefixes keep their order.
        self._rules = sorted(ordered, key=lambda rule: len(rule.prefix), reverse=True)
        self._unmatched = unmatched
        self._decide = lru_cache(maxsize=cache_size)(self._requirement)

    @property
    def has_rules(self) -> bool:
        return bool(self._rules)

    def requirement(self, method: str, path: str) -> Requirement:
        return self._decide(method, path)

    def _requirement(self, method: str, path: str) -> Requirement:
        for rule in self._rules:
            if (not rule.methods or method in rule.methods) and (
                path.startswith(rule.prefix) or path == rule.directory
            ):
                return rule.requirement
        if self._unmatched == "deny":
            return _DENIED
        return _AUTHENTICATED if method in SAFE_METHODS else _WRITE


@lru_cache(maxsize=4096)
def upstream_path(uri: str) -> str:
    """The path a rule is matched against, from the proxy's original URI (see above)."""
    if "://" in uri.split("?", 1)[0]:
        uri = urlsplit(uri).path  # absolute-form request target
    path = unquote(uri.split("?", 1)[0].split("#", 1)[0], errors="replace")
    segments: list[str] = []
    parts = path.split("/")
    for segment in parts:
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    directory = parts[-1] in ("", ".", "..") and bool(segments)
    return "/" + "/".join(segments) + ("/" if directory else "")
