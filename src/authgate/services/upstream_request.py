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
  Caddy's requests are GETs), so the verify request's method says nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from authgate.exceptions import AmbiguousUpstreamRequest, ValidationFailed
from authgate.security.paths import MAX_TARGET_LENGTH, canonical_method
from authgate.settings import ForwardAuthProxy

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

# Every value of each header the reader looks at, by lower-case name (as ASGI has them).
HeaderValues = Mapping[bytes, Sequence[str]]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """The proxied request's method (canonical) and target (as the proxy sent it)."""

    method: str
    target: str


class UpstreamRequestReader:
    """Reads the upstream request from one header pair and refuses any disagreement."""

    def __init__(self, *, method_header: str, uri_header: str, configured_as: str) -> None:
        self.method_header = method_header
        self.uri_header = uri_header
        self._configured_as = configured_as  # for messages: how the operator chose the pair
        self._method = _name(method_header)
        self._uri = _name(uri_header)
        # The other known headers: a client may have sent them through the proxy.
        self._other_methods = tuple(
            (name, _name(name)) for name in _KNOWN_METHOD_HEADERS if _name(name) != self._method
        )
        self._other_uris = tuple(
            (name, _name(name)) for name in _KNOWN_URI_HEADERS if _name(name) != self._uri
        )
        self.header_names: frozenset[bytes] = frozenset(
            {self._method, self._uri}
            | {name for _, name in self._other_methods}
            | {name for _, name in self._other_uris}
        )

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

    def read(self, headers: HeaderValues) -> UpstreamRequest:
        """The upstream request described by ``headers`` (every value of each name in
        :attr:`header_names` the request carries).

        Raises ``AmbiguousUpstreamRequest`` when the headers can be read two ways and
        ``ValidationFailed`` when the read pair is missing or the method is malformed.
        """
        method = self._single(headers, self._method, self.method_header)
        target = self._single(headers, self._uri, self.uri_header)
        for name, key in self._other_methods:
            for value in headers.get(key, ()):
                if method is None or value.strip().upper() != method.strip().upper():
                    raise self._conflict(name)
        for name, key in self._other_uris:
            for value in headers.get(key, ()):
                if value != target:
                    raise self._conflict(name)
        if method is None or target is None:
            missing = [
                name
                for name, value in ((self.method_header, method), (self.uri_header, target))
                if value is None
            ]
            raise ValidationFailed(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: "
                f"forward-auth checks the request the proxy describes in "
                f"{self.method_header} and {self.uri_header} ({self._configured_as})"
            )
        if len(target) > MAX_TARGET_LENGTH:
            raise ValidationFailed(f"{self.uri_header} is too long")
        return UpstreamRequest(method=canonical_method(method), target=target)

    def claimed_target(self, headers: HeaderValues) -> str | None:
        """The URI the read header gives, unchecked (to record what a refused request
        claimed)."""
        values = headers.get(self._uri, ())
        return values[0] if values else None

    @staticmethod
    def _single(headers: HeaderValues, key: bytes, name: str) -> str | None:
        values = headers.get(key, ())
        if len(values) > 1:
            # A proxy that appends rather than replaces, plus a client's own copy.
            raise AmbiguousUpstreamRequest(
                f"{name} was sent more than once", reason="duplicate_upstream_header", header=name
            )
        return values[0] if values else None

    def _conflict(self, header: str) -> AmbiguousUpstreamRequest:
        return AmbiguousUpstreamRequest(
            f"{header} disagrees with {self.method_header}/{self.uri_header}, the headers "
            f"authgate reads ({self._configured_as}); is the proxy setting right?",
            reason="conflicting_upstream_header",
            header=header,
        )


def _name(header: str) -> bytes:
    return header.strip().lower().encode("ascii")
