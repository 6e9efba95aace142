"""What forward-auth requires of a caller for an upstream request (method + path).

A reverse proxy (nginx ``auth_request``, Traefik ``ForwardAuth``, Caddy
``forward_auth``) asks authgate about each request to an API that is not authgate's
own. Who the caller is comes from the usual authentication; whether that caller may
make *this* request is decided here, by rules per upstream path prefix and method
(``forward_auth_rules``):

* the rule with the longest matching prefix wins; among rules with the same prefix,
  the first whose methods include the request's (a rule without methods takes any; one
  naming GET takes HEAD too, as upstreams answer HEAD with their GET handler).
  A method no rule of a prefix names is decided by a shorter prefix's rules, or as
  unmatched (as routes match on path and method in Kong or Traefik); the start-up log
  warns of every prefix whose rules leave methods to others that way;
* a rule requires all its ``scopes`` of an API key (a user's token carries the user's
  full rights), one of its ``roles`` of any caller, its ``permission`` of any caller
  (granted by the roles in force; an API key holds permissions only with the
  ``admin`` scope), or refuses everything (``allow = false``);
* a request no rule matches is held to authgate's own rule (API keys need ``write``
  for unsafe methods) or refused, as ``forward_auth_unmatched`` says.

The request comes only from the header pair of the configured proxy
(:mod:`authgate.services.upstream_request`); a method override it carries (a
``_method`` query parameter, an ``X-HTTP-Method-Override`` header) holds it to the
override's method's rules as well as to its own. Its path is matched in one canonical
form (:mod:`authgate.security.paths`: decoded once; dot and empty segments,
``;params`` and trailing dots are refused, as servers read them differently),
case-insensitively unless ``forward_auth_case_sensitive``; where the case-folded path
and the path as sent pick different rules, the caller must meet both (an upstream may
or may not ignore case: ``/files/PUBLIC`` is ``/files/public`` to one, ``/files`` to
another). A prefix covers whole segments: ``/admin`` (or ``/admin/``) covers ``/admin`` and
``/admin/...``, never ``/administrator``. The decision for a (method, path) pair is
computed once and remembered (bounded), and so is the decision for a request the
reader hands out again (:meth:`ForwardAuthPolicy.decision`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from authgate.exceptions import AmbiguousUpstreamPath, InsufficientScope, PermissionDenied
from authgate.reasons import Reason
from authgate.security.paths import (
    canonical_path,
    canonical_text_path,
    case_folded,
    segment_prefixes,
)
from authgate.security.permissions import ALL_PERMISSIONS
from authgate.security.principal import (
    KNOWN_AUTHORITIES,
    KNOWN_SCOPES,
    READING_SCOPES,
    SCOPE_WRITE,
    Principal,
)
from authgate.services.gate import SAFE_METHODS
from authgate.services.gate import Requirement as GateRequirement
from authgate.services.upstream_request import (
    MAX_REMEMBERED_TARGET,
    ForwardAuthProxy,
    RawHeaders,
    UpstreamRequest,
    UpstreamRequestReader,
)

Unmatched = Literal["authenticated", "deny"]


class ForwardAuthRuleSetting(BaseModel):
    """What ``/api/auth/verify`` requires for upstream requests under a path prefix.

    The longest matching ``path_prefix`` wins; among rules with the same prefix, the
    first whose ``methods`` include the request's method (no ``methods``: any method;
    ``GET`` includes ``HEAD``).
    A prefix covers whole path segments (``/admin`` and ``/admin/`` both cover ``/admin``
    and ``/admin/x``, not ``/administrator``) and must be written in canonical form.
    ``scopes`` are all required of API keys (a user's token carries the user's full
    rights); ``roles``: the caller (user or key) needs one of them; ``permission``: the
    caller's roles in force must grant it (``users.read``, ...; an API key holds
    permissions only with the ``admin`` scope).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path_prefix: str = Field(pattern=r"^/[^\s?#]*$", max_length=1024)
    methods: list[str] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    permission: str | None = None
    allow: bool = Field(default=True, description="false: refuse every request (403).")

    @field_validator("permission")
    @classmethod
    def _known_permission(cls, permission: str | None) -> str | None:
        if permission is not None and permission not in ALL_PERMISSIONS:
            known = ", ".join(sorted(ALL_PERMISSIONS))
            raise ValueError(f"unknown permission {permission!r}; use one of {known}")
        return permission

    @field_validator("methods")
    @classmethod
    def _method_names(cls, methods: list[str]) -> list[str]:
        upper = [method.strip().upper() for method in methods]
        for method in upper:
            if not method.isascii() or not method.isalpha() or len(method) > 20:
                raise ValueError(f"not an HTTP method: {method!r}")
        return upper

    @field_validator("path_prefix")
    @classmethod
    def _canonical_prefix(cls, prefix: str) -> str:
        """A prefix is matched against canonical paths, so it must be one itself: a
        prefix such as ``/a/../b`` or ``/admin;x`` could never match as written."""
        try:
            canonical = canonical_text_path(prefix)
        except AmbiguousUpstreamPath as error:
            raise ValueError(f"path_prefix {prefix!r} is ambiguous ({error.reason})") from None
        if (canonical.rstrip("/") or "/") != (prefix.rstrip("/") or "/"):
            raise ValueError(f"path_prefix {prefix!r} is not canonical: write {canonical!r}")
        return prefix


class ForwardAuthConfig(BaseModel):
    """``Settings.forward_auth``, set by the ``AUTHGATE_FORWARD_AUTH_*`` names
    (``authgate.settings_names``) or a ``[forward_auth]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[ForwardAuthRuleSetting] = Field(
        default_factory=list,
        description="Scope/role rules of /api/auth/verify per upstream path prefix and method.",
    )
    unmatched: Unmatched = Field(
        default="authenticated",
        description="Upstream paths no rule matches: any valid credential (keys need write "
        "for unsafe methods), or refused.",
    )
    proxy: ForwardAuthProxy = Field(
        default="nginx",
        description="The proxy in front of /api/auth/verify; only the headers it sets are "
        "read: nginx X-Original-Method/-URI (as in examples/nginx), traefik and caddy "
        "X-Forwarded-Method/-Uri. The other pair, if present, must agree (else 400).",
    )
    method_header: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="Explicit header carrying the upstream method (with uri_header; "
        "overrides proxy).",
    )
    uri_header: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="Explicit header carrying the upstream URI (with method_header; "
        "overrides proxy).",
    )
    case_sensitive: bool = Field(
        default=False,
        description="Match rule prefixes case-sensitively (default: /ADMIN is held to an "
        "/admin rule, as case-insensitive upstreams would serve it).",
    )

    def warnings(self, known_scopes: frozenset[str] = KNOWN_SCOPES) -> list[str]:
        """One line per path prefix whose rules all name methods: the methods they leave
        out are not refused there but decided by a shorter prefix's rules or by
        ``unmatched`` (``/admin`` with ``methods = ["GET"]`` and a role lets anyone
        authenticated POST under ``/admin`` unless something else says otherwise); and
        one per rule naming a role no user can hold or a scope no key can be given
        (``known_scopes``: the built-in and ``api_key_extra_scopes``), a typo that
        refuses everyone there without a word."""
        return self._method_warnings() + [
            f"forward-auth rule for {rule.path_prefix} names {what} {', '.join(names)}: "
            f"no {holder} can have {'it' if len(names) == 1 else 'them'}"
            for rule in self.rules
            for what, holder, names in (
                ("the unknown role", "user", sorted(set(rule.roles) - KNOWN_AUTHORITIES)),
                ("the unknown scope", "API key", sorted(set(rule.scopes) - known_scopes)),
            )
            if names
        ]

    def _method_warnings(self) -> list[str]:
        named: dict[str, set[str] | None] = {}
        for rule in self.rules:
            prefix = rule.path_prefix.rstrip("/") or "/"
            if not self.case_sensitive:
                prefix = case_folded(prefix)
            methods = named.setdefault(prefix, set())
            if methods is not None:
                if rule.methods:
                    methods.update(_covered_methods(rule.methods))
                else:
                    named[prefix] = None  # a rule there takes every method
        return [
            f"forward-auth rules for {prefix} name only {', '.join(sorted(methods))}: other "
            f"methods there are decided by a shorter prefix's rules or by "
            f"forward_auth_unmatched ({self.unmatched}); add a rule without methods for "
            f"{prefix} to decide them there"
            for prefix, methods in named.items()
            if methods is not None
        ]


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a caller needs for one upstream (method, path)."""

    scopes: frozenset[str] = frozenset()
    # Of these an API key needs one at least (empty: no such condition): where no rule
    # names the scopes of a safe method, ``read`` or ``write``, as on authgate's own API.
    any_scopes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    permission: str | None = None
    allow: bool = True
    rule: str = "default"  # which rule decided (for logs and errors)
    # A second requirement the caller must meet as well: the exact-case reading's, when
    # it differs from the case-folded one (see ``ForwardAuthPolicy._requirement``).
    also: Requirement | None = None

    def admits(self, principal: Principal, _method: str) -> None:
        """``check``, as the gate asks a requirement (the method is the upstream's,
        already part of this requirement)."""
        self.check(principal)

    def check(self, principal: Principal) -> None:
        """Nothing when ``principal`` satisfies it; ``PermissionDenied`` otherwise."""
        if not self.allow:
            raise PermissionDenied(
                "No credential may access this upstream path", reason=Reason.FORWARD_AUTH_DENIED
            )
        if self.roles and not (self.roles & principal.authorities):
            raise PermissionDenied(
                f"This upstream path needs one of the roles {', '.join(sorted(self.roles))}",
                reason=Reason.ROLE_REQUIRED,
            )
        if self.permission is not None and not principal.has_permission(self.permission):
            raise PermissionDenied(
                f"This upstream path needs the permission {self.permission}",
                reason=Reason.PERMISSION_REQUIRED,
            )
        if principal.scopes is not None and not self.scopes <= principal.scopes:
            missing = ", ".join(sorted(self.scopes - principal.scopes))
            raise InsufficientScope(
                f"This API key lacks the scope {missing} for this upstream request",
                reason=Reason.SCOPE_REQUIRED,
            )
        wanted = self.any_scopes
        if wanted and principal.scopes is not None and wanted.isdisjoint(principal.scopes):
            raise InsufficientScope(
                f"This API key needs the scope {' or '.join(sorted(wanted))} for this "
                "upstream request",
                reason=Reason.SCOPE_REQUIRED,
            )
        if self.also is not None:
            self.also.check(principal)


@dataclass(frozen=True, slots=True)
class _Rule:
    methods: frozenset[str]  # as named (empty: any)
    covered: frozenset[str]  # what it decides: HEAD too when it names GET
    requirement: Requirement  # for safe methods
    # A rule that names no scopes still holds API keys to ``read`` or ``write`` for
    # safe methods and to ``write`` for the others, as unmatched paths do (a ``read``
    # key stays on GET/HEAD/OPTIONS wherever it goes, a key with only ``orders:write``
    # goes only where a rule names it); a rule that names scopes decides alone.
    unsafe: Requirement


_WRITE = Requirement(scopes=frozenset({SCOPE_WRITE}), rule="default")
_AUTHENTICATED = Requirement(any_scopes=READING_SCOPES, rule="default")
_DENIED = Requirement(allow=False, rule="default")


class ForwardAuthPolicy:
    """The forward-auth rules, and how the request under check is read."""

    @classmethod
    def configured(cls, config: ForwardAuthConfig) -> ForwardAuthPolicy:
        return cls(
            config.rules,
            unmatched=config.unmatched,
            case_sensitive=config.case_sensitive,
            reader=UpstreamRequestReader.for_proxy(
                config.proxy, method_header=config.method_header, uri_header=config.uri_header
            ),
        )

    def __init__(
        self,
        rules: Iterable[ForwardAuthRuleSetting] = (),
        *,
        unmatched: Unmatched = "authenticated",
        case_sensitive: bool = False,
        reader: UpstreamRequestReader | None = None,
        cache_size: int = 4096,
    ) -> None:
        self._case_sensitive = case_sensitive
        # Rules by the canonical prefix they cover (``/admin/`` and ``/admin`` are one),
        # each list in configuration order: as written, and case-folded.
        self._by_prefix: dict[str, list[_Rule]] = {}
        self._by_folded_prefix: dict[str, list[_Rule]] = {}
        for rule in rules:
            prefix = _prefix_path(rule.path_prefix)
            requirement = Requirement(
                scopes=frozenset(rule.scopes),
                roles=frozenset(rule.roles),
                permission=rule.permission,
                allow=rule.allow,
                rule=f"{rule.path_prefix} {','.join(rule.methods) or '*'}",
            )
            named = bool(rule.scopes)
            entry = _Rule(
                methods=frozenset(rule.methods),
                covered=_covered_methods(rule.methods),
                requirement=requirement
                if named
                else replace(requirement, any_scopes=READING_SCOPES),
                unsafe=requirement if named else replace(requirement, scopes=_WRITE.scopes),
            )
            self._by_prefix.setdefault(prefix, []).append(entry)
            self._by_folded_prefix.setdefault(case_folded(prefix), []).append(entry)
        self._unmatched = unmatched
        self.reader = reader or UpstreamRequestReader.for_proxy("nginx")
        self._decide = lru_cache(maxsize=cache_size)(self._requirement)
        self._cache_size = cache_size
        # ``decision`` per request read (the reader hands out one object per pair it
        # remembers): checked by identity, the entry holding the object. Bounded.
        self._decisions: dict[int, tuple[UpstreamRequest, str, GateRequirement]] = {}

    def upstream_request(self, headers: RawHeaders) -> UpstreamRequest:
        """The request the proxy asks about (see :class:`UpstreamRequestReader.read`)."""
        return self.reader.read(headers)

    @staticmethod
    def upstream_path(request: UpstreamRequest) -> str:
        """The canonical path of the upstream request (``AmbiguousUpstreamPath`` if it
        has none)."""
        return canonical_path(request.target)

    def decision(self, request: UpstreamRequest) -> tuple[str, GateRequirement]:
        """The canonical path of ``request`` (``AmbiguousUpstreamPath`` if it has none)
        and what the gate is to ask of its caller (:meth:`request_requirement`)."""
        known = self._decisions.get(id(request))
        if known is not None and known[0] is request:
            return known[1], known[2]
        path = self.upstream_path(request)
        admits = self.request_requirement(request, path).admits
        if len(request.target) > MAX_REMEMBERED_TARGET:  # memory stays bounded
            return path, admits
        if len(self._decisions) >= self._cache_size:
            del self._decisions[next(iter(self._decisions))]
        self._decisions[id(request)] = (request, path, admits)
        return path, admits

    def requirement(self, method: str, path: str) -> Requirement:
        """What a caller needs for ``method`` (canonical, upper case) on ``path``
        (canonical, from :meth:`upstream_path`). Remembered for paths of up to
        ``MAX_REMEMBERED_TARGET`` characters only, so the memo stays a few MB however
        long the paths a caller sends (up to the request head's bound, 32 KiB)."""
        if len(path) > MAX_REMEMBERED_TARGET:
            return self._requirement(method, path)
        return self._decide(method, path)

    def request_requirement(self, request: UpstreamRequest, path: str) -> Requirement:
        """What a caller needs for ``request`` on ``path``: its method's requirement and,
        for each method override it carries (``POST /x?_method=DELETE``), that method's
        as well: an upstream that honours the override runs it as that method, one that
        does not as the method sent, so the caller must be allowed both."""
        requirement = self.requirement(request.method, path)
        for method in request.overrides:
            requirement = _both(requirement, self.requirement(method, path))
        return requirement

    def _requirement(self, method: str, path: str) -> Requirement:
        decided = self._reading(method, path, head_with_get=True)
        if method != "HEAD":
            return decided
        # A rule naming GET decides HEAD too (upstreams answer HEAD with their GET
        # handler), but never more laxly than the rules as written would: an explicit
        # HEAD rule, or a shorter prefix's, still has its say (both must be met). Only
        # "read or write" is not asked again where the GET rule named its scopes.
        as_written = self._reading(method, path, head_with_get=False)
        return _both(decided, as_written, named_scopes_decide=True)

    def _reading(self, method: str, path: str, *, head_with_get: bool) -> Requirement:
        exact = self._matching(self._by_prefix, method, path, head_with_get)
        if self._case_sensitive:
            return exact
        # Case-insensitive: /ADMIN/x is held to an /admin rule, as an upstream that
        # ignores case serves it. But an upstream that does not (Tomcat, Starlette, most
        # frameworks) serves /files/PUBLIC/x from /files, not from a looser /files/public
        # rule: so a path whose two readings pick different rules must meet both.
        folded = self._matching(self._by_folded_prefix, method, case_folded(path), head_with_get)
        return _both(folded, exact)

    def _matching(
        self, by_prefix: dict[str, list[_Rule]], method: str, path: str, head_with_get: bool
    ) -> Requirement:
        for prefix in segment_prefixes(path):
            for rule in by_prefix.get(prefix, ()):
                methods = rule.covered if head_with_get else rule.methods
                if not methods or method in methods:
                    return rule.requirement if method in SAFE_METHODS else rule.unsafe
        if self._unmatched == "deny":
            return _DENIED
        return _AUTHENTICATED if method in SAFE_METHODS else _WRITE


def _both(
    first: Requirement, second: Requirement, *, named_scopes_decide: bool = False
) -> Requirement:
    """A requirement that holds a caller to ``first`` and to ``second``. With
    ``named_scopes_decide`` (HEAD read with and without the GET rule: one request, one
    handler), "read or write" (``any_scopes``) is not asked by one reading when the
    other's rule names scopes (``orders:read`` for GET). Two readings of a path in
    different cases may be two resources: each keeps all of its own requirement."""
    if named_scopes_decide:
        if first.scopes and second.any_scopes:
            second = _without_any_scopes(second)
        if second.scopes and first.any_scopes:
            first = _without_any_scopes(first)
    if first == second:
        return first
    also = second if first.also is None else _both(first.also, second)
    return replace(first, also=also, rule=f"{first.rule} and {second.rule}")


def _without_any_scopes(requirement: Requirement) -> Requirement:
    also = requirement.also
    return replace(
        requirement,
        any_scopes=frozenset(),
        also=_without_any_scopes(also) if also is not None else None,
    )


def _covered_methods(methods: Iterable[str]) -> frozenset[str]:
    """The methods a rule naming ``methods`` decides: HEAD with GET, since upstreams
    answer a HEAD with their GET handler (a GET-only admin rule must not leave HEAD to
    the unmatched default)."""
    covered = frozenset(methods)
    return covered | {"HEAD"} if "GET" in covered else covered


def _prefix_path(prefix: str) -> str:
    """A rule's prefix as the path it covers (settings accept only canonical ones)."""
    return canonical_text_path(prefix).rstrip("/") or "/"
