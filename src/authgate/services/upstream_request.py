"""Which request forward-auth is asked about: read only from the headers the proxy sets.

A proxy describes the request it holds in two headers, method and URI, and each proxy
uses its own pair: nginx's ``auth_request`` gets what its configuration sets
(authgate's example: ``X-Original-Method``/``X-Original-URI``); Traefik's
``ForwardAuth`` and Caddy's ``forward_auth`` set ``X-Forwarded-Method``/
``X-Forwarded-Uri``. Traefik and Caddy also copy the *client's* headers into the auth
request, so a client could add the other pair and choose the path that is checked
("``X-Original-URI: /public/x``" on a request to ``/admin/x``). Hence:

* exactly one pair is read: the one of the proxy named in ``forward_auth_proxy`` (or
  the two header names given explicitly);
* the other known pair, if present, must say the same; a header sent twice, or a
  known header the read pair lacks, is ambiguous too: refused
  (``AmbiguousUpstreamRequest``, 400, audited), never guessed;
* both headers of the read pair are required (``ValidationFailed``): every proxy sends
  the auth request with a method of its own (nginx's subrequest and Traefik's and
  Caddy's requests are GETs), so the verify request's method says nothing;
* the method must be in upper case (``get`` is refused: upstreams read it differently);
* method overrides are read too: a ``_method`` query parameter of the URI (Laravel,
  Symfony, Express's ``method-override`` run ``POST /x?_method=DELETE`` as a DELETE) and
  the ``X-HTTP-Method-Override``, ``X-HTTP-Method`` and ``X-Method-Override`` headers,
  which nginx and Caddy pass on to the auth request unless told otherwise (the
  examples remove them for the upstream). Forward-auth holds the request to the
  override's method as well as to the sent one; an override that names no method is
  refused (``AmbiguousUpstreamRequest``, ``invalid_method_override``). A ``_method`` in
  a form body is never seen: the auth request has no body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal, NamedTuple

from authgate.exceptions import AmbiguousUpstreamRequest, ValidationFailed
from authgate.reasons import Reason
from authgate.security.paths import (
    MAX_TARGET_LENGTH,
    canonical_method,
    override_method,
    query_method_overrides,
)

# The reverse proxy in front of forward-auth, which decides the headers that describe
# the request under check.
ForwardAuthProxy = Literal["nginx", "traefik", "caddy"]

ORIGINAL_METHOD: Final = "X-Original-Method"
ORIGINAL_URI: Final = "X-Original-URI"
FORWARDED_METHOD: Final = "X-Forwarded-Method"
FORWARDED_URI: Final = "X-Forwarded-Uri"

# The (method, URI) header pair each proxy sets on its auth request.
PROXY_HEADERS: Final[Mapping[ForwardAuthProxy, tuple[str, str]]] = {
    "nginx": (ORIGINAL_METHOD, ORIGINAL_URI),
    "traefik": (FORWARDED_METHOD, FORWARDED_URI),
    "caddy": (FORWARDED_METHOD, FORWARDED_URI),
}
_KNOWN_METHOD_HEADERS = (ORIGINAL_METHOD, FORWARDED_METHOD)
_KNOWN_URI_HEADERS = (ORIGINAL_URI, FORWARDED_URI)
# Headers by which frameworks (Symfony and Laravel, Rack, ASP.NET, Express's
# method-override, Google's APIs) let a client run another method than the one sent.
METHOD_OVERRIDE_HEADERS: Final = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")

# How many (method, URI) pairs a reader remembers the reading of, and of which length
# (a few MB at most, however many distinct URIs are sent).
MAX_REMEMBERED_PAIRS = 2048
MAX_REMEMBERED_TARGET = 512

# A request's headers as ASGI gives them: (lower-case name, value) byte pairs.
RawHeaders = Iterable[tuple[bytes, bytes]]


class UpstreamRequest(NamedTuple):
    """The proxied request's method (canonical) and target (as the proxy sent it), and
    the other methods an upstream may run it as (method overrides, upper case)."""

    method: str
    target: str
    overrides: tuple[str, ...] = ()


class UpstreamRequestReader:
    """Reads the upstream request from one header pair and refuses any disagreement.

    One pass over the request's headers, comparing bytes (verify is the hottest
    endpoint); only the two values read are decoded.
    """

    def __init__(self, *, method_header: str, uri_header: str, configured_as: str) -> None:
        self.method_header = method_header
        self.uri_header = uri_header
        self._configured_as = configured_as  # for messages: how the operator chose the pair
        self._method = _name(method_header)
        self._uri = _name(uri_header)
        # The other known headers (a client may have sent them through the proxy), by
        # lower-case name: their display name and whether they carry a method.
        self._others: dict[bytes, tuple[str, bool]] = {
            _name(name): (name, True) for name in _KNOWN_METHOD_HEADERS
        } | {_name(name): (name, False) for name in _KNOWN_URI_HEADERS}
        self._others.pop(self._method, None)
        self._others.pop(self._uri, None)
        # Override headers by lower-case name: their display name.
        self._overriding = {_name(name): name for name in METHOD_OVERRIDE_HEADERS}
        self._overriding.pop(self._method, None)
        self._overriding.pop(self._uri, None)
        self._wanted = frozenset({self._method, self._uri, *self._others, *self._overriding})
        # What a (method, URI) pair read alone reads as: nearly every request carries no
        # other known header and no override header, and a proxy asks about the same few
        # pairs again and again. Bounded; the oldest pair goes first.
        self._read_alone: dict[tuple[bytes, bytes], UpstreamRequest] = {}

    @classmethod
    def for_proxy(
        cls,
        proxy: ForwardAuthProxy,
        *,
        method_header: str | None = None,
        uri_header: str | None = None,
    ) -> UpstreamRequestReader:
        """The pair ``proxy`` sets, unless both header names are given explicitly."""
        if method_header is not None and uri_header is not None:
            return cls(
                method_header=method_header,
                uri_header=uri_header,
                configured_as="AUTHGATE_FORWARD_AUTH_METHOD_HEADER/_URI_HEADER",
            )
        method, uri = PROXY_HEADERS[proxy]
        return cls(
            method_header=method,
            uri_header=uri,
            configured_as=f"AUTHGATE_FORWARD_AUTH_PROXY={proxy}",
        )

    def read(self, headers: RawHeaders) -> UpstreamRequest:
        """The upstream request the headers describe.

        Raises ``AmbiguousUpstreamRequest`` when the headers can be read two ways and
        ``ValidationFailed`` when the read pair is missing or the method is malformed.
        """
        method: bytes | None = None
        target: bytes | None = None
        others: list[tuple[bytes, bytes]] | None = None
        overriding: list[tuple[bytes, bytes]] | None = None
        method_name, uri_name, wanted = self._method, self._uri, self._wanted
        for name, value in headers:
            if name not in wanted:  # most headers: one (cached) hash lookup
                continue
            if name == method_name:
                if method is not None:
                    raise self._duplicate(self.method_header)
                method = value
            elif name == uri_name:
                if target is not None:
                    raise self._duplicate(self.uri_header)
                target = value
            elif name in self._overriding:
                if overriding is None:
                    overriding = []
                overriding.append((name, value))
            else:
                if others is None:
                    others = []
                others.append((name, value))
        if others is not None:
            self._check_agreement(others, method, target)
        if method is None or target is None:
            raise self._missing(method is None, target is None)
        if overriding is None and len(target) <= MAX_REMEMBERED_TARGET:
            known = self._read_alone.get((method, target))
            if known is not None:
                return known
            request = self._parsed(method, target, None)
            if len(self._read_alone) >= MAX_REMEMBERED_PAIRS:
                del self._read_alone[next(iter(self._read_alone))]
            self._read_alone[method, target] = request
            return request
        return self._parsed(method, target, overriding)

    def _parsed(
        self, method: bytes, target: bytes, overriding: list[tuple[bytes, bytes]] | None
    ) -> UpstreamRequest:
        if len(target) > MAX_TARGET_LENGTH:
            raise ValidationFailed(f"{self.uri_header} is too long")
        try:
            canonical = canonical_method(method.decode("latin-1"))
        except AmbiguousUpstreamRequest as error:
            error.header = self.method_header
            raise
        uri = target.decode("latin-1")
        return UpstreamRequest(canonical, uri, self._overrides(canonical, uri, overriding))

    def _overrides(
        self, method: str, uri: str, headers: list[tuple[bytes, bytes]] | None
    ) -> tuple[str, ...]:
        """The methods the request's overrides name, other than ``method``: from the
        override headers, then the query's ``_method`` parameters. Raises
        ``AmbiguousUpstreamRequest`` for one that names no method."""
        from_query = query_method_overrides(uri)
        if headers is None and not from_query:  # nearly every request: nothing to read
            return ()
        named = [(self._overriding[name], value.decode("latin-1")) for name, value in headers or ()]
        named.extend((self.uri_header, value) for value in from_query)
        overrides: list[str] = []
        for header, value in named:
            override = override_method(value)
            if override is None:
                raise AmbiguousUpstreamRequest(
                    f"A method override in {header} names no HTTP method: frameworks that "
                    "honour it would refuse the request or run it as another method",
                    reason=Reason.INVALID_METHOD_OVERRIDE,
                    header=header,
                )
            if override != method and override not in overrides:
                overrides.append(override)
        return tuple(overrides)

    def _check_agreement(
        self, others: list[tuple[bytes, bytes]], method: bytes | None, target: bytes | None
    ) -> None:
        """The other pair's headers must say what the read pair says."""
        for name, value in others:
            display, is_method = self._others[name]
            if is_method:
                if value != method and (
                    method is None or value.strip().upper() != method.strip().upper()
                ):
                    raise self._conflict(display)
            elif value != target:
                raise self._conflict(display)

    def claimed_target(self, headers: RawHeaders) -> str | None:
        """The URI the read header gives, unchecked (to record what a refused request
        claimed)."""
        for name, value in headers:
            if name == self._uri:
                return value.decode("latin-1")
        return None

    def _missing(self, method: bool, uri: bool) -> ValidationFailed:
        missing = [
            name
            for name, absent in ((self.method_header, method), (self.uri_header, uri))
            if absent
        ]
        return ValidationFailed(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: "
            f"forward-auth checks the request the proxy describes in "
            f"{self.method_header} and {self.uri_header} ({self._configured_as})"
        )

    @staticmethod
    def _duplicate(header: str) -> AmbiguousUpstreamRequest:
        # A proxy that appends rather than replaces, plus a client's own copy.
        return AmbiguousUpstreamRequest(
            f"{header} was sent more than once",
            reason=Reason.DUPLICATE_UPSTREAM_HEADER,
            header=header,
        )

    def _conflict(self, header: str) -> AmbiguousUpstreamRequest:
        return AmbiguousUpstreamRequest(
            f"{header} disagrees with {self.method_header}/{self.uri_header}, the headers "
            f"authgate reads ({self._configured_as}); is the proxy setting right?",
            reason=Reason.CONFLICTING_UPSTREAM_HEADER,
            header=header,
        )


def _name(header: str) -> bytes:
    return header.strip().lower().encode("ascii")
