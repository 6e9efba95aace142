"""What the guard reads from an incoming ASGI request: the credential and where it came from.

The rules are authgate's own (``api/access.py`` there): ``Utm-Api-Key: <key>`` wins
when present; otherwise ``Authorization: Bearer <credential>``, where an API key and a
JWT are told apart by format (keys start with ``agk_``), never by trial.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from starlette.types import Scope

from authgate.guard._errors import REALM, NotAuthenticated
from authgate.guard._paths import uri_readings
from authgate.security.credentials import bearer_credential
from authgate.security.keys import looks_like_api_key

__all__ = ["Credential", "IncomingRequest"]

CredentialHeader = Literal["authorization", "utm-api-key"]
CredentialKind = Literal["jwt", "api_key"]

# Headers by which frameworks let a client run another method than the one sent
# (authgate's ``METHOD_OVERRIDE_HEADERS``, which it holds to the override's rules too):
# passed on to authgate as they came, every occurrence.
METHOD_OVERRIDE_HEADERS = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")
_OVERRIDE_NAMES = {name.lower().encode("ascii"): name for name in METHOD_OVERRIDE_HEADERS}


@dataclass(frozen=True, slots=True)
class Credential:
    """A presented secret, the header it came in and what it looks like."""

    value: str = field(repr=False)
    header: CredentialHeader
    kind: CredentialKind


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """The parts of a request that authenticating it needs."""

    credential: Credential | None
    method: str
    # The path and query as sent, for authgate's forward-auth rules; then, when the app
    # has a root path, the route's reading (``_paths``): both must pass.
    uris: tuple[str, ...]
    # The peer's address as the server gave it, when it is an IP address: None for a
    # unix socket, or a host name a server took from a forwarding header.
    client_ip: str | None
    # Method-override headers (name, value), in order: see ``METHOD_OVERRIDE_HEADERS``.
    overrides: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_scope(cls, scope: Scope) -> IncomingRequest:
        """Read an ``http`` or ``websocket`` scope (a websocket handshake is a GET).

        Raises:
            NotAuthenticated: a credential header that is present but empty.
        """
        client = scope.get("client")
        return cls(
            credential=_credential(scope),
            method=str(scope.get("method", "GET")),
            uris=uri_readings(scope),
            client_ip=_ip_address(client[0]) if client else None,
            overrides=tuple(
                (_OVERRIDE_NAMES[name], value.decode("latin-1"))
                for name, value in scope["headers"]
                if name in _OVERRIDE_NAMES
            ),
        )


def _ip_address(host: object) -> str | None:
    """``host`` as an IP address (canonical text), or None when it is none."""
    try:
        return str(ipaddress.ip_address(str(host)))
    except ValueError:
        return None


def _credential(scope: Scope) -> Credential | None:
    api_key = _header(scope, b"utm-api-key")
    if _repeated(scope, b"utm-api-key") or _repeated(scope, b"authorization"):
        # As authgate: an upstream reading the other header would see another caller.
        raise NotAuthenticated(
            "Send one credential: this request has two Authorization or Utm-Api-Key headers",
            code="invalid_token",
            headers=_INVALID,
        )
    if api_key is not None:
        if not api_key.strip():
            raise NotAuthenticated("Invalid API key", code="invalid_api_key", headers=_INVALID)
        return Credential(api_key.strip(), "utm-api-key", "api_key")
    bearer = bearer_credential(_header(scope, b"authorization"))
    if bearer is None:
        return None
    if not bearer:
        raise NotAuthenticated("Invalid token", code="invalid_token", headers=_INVALID)
    return Credential(bearer, "authorization", "api_key" if looks_like_api_key(bearer) else "jwt")


def _repeated(scope: Scope, name: bytes) -> bool:
    return sum(1 for key, _ in scope["headers"] if key == name) > 1


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


_INVALID = {"WWW-Authenticate": f'{REALM}, error="invalid_token"'}
