"""Which address a request really comes from.

The socket peer, unless that peer is one of the configured trusted proxies: then the
forwarding header is walked from the right (the end the proxies append to), skipping
trusted hops, and the first untrusted address is the client. Entries to its left were
written by the client itself and are never believed. Forwarding headers from an
untrusted peer are ignored entirely (UTMStack trusted the first ``X-Forwarded-For``
entry, which any client can forge).

Exactly one forwarding header is read, the one the proxies are configured to write
(``X-Forwarded-For`` by default, or RFC 7239 ``Forwarded``): proxies append to theirs and
pass any other through untouched, so reading the other one would believe the client.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from authgate.security.networks import IPAddress, TrustedProxies, parse_address

ForwardingHeader = Literal["x-forwarded-for", "forwarded"]


class ClientIpResolver:
    def __init__(
        self, trusted_proxies: TrustedProxies, *, header: ForwardingHeader = "x-forwarded-for"
    ) -> None:
        self.header = header
        self.header_name = header.encode("ascii")  # as ASGI scopes carry it
        self._trusted = trusted_proxies
        # Per-instance memo of peer strings: most requests come from few peers.
        self._parse = lru_cache(maxsize=4096)(parse_address)
        # And of what a peer string means (its address, whether it is a trusted proxy):
        # one C-level lookup per request instead of parsing and searching the trusted
        # networks twice (``trusts`` then ``resolve``). Same bound, same inputs.
        self.peer = lru_cache(maxsize=4096)(self._peer)

    def _peer(self, peer: str | None) -> tuple[IPAddress | None, bool]:
        address = self._parse(peer) if peer else None
        return address, address is not None and self._trusted.trusts(address)

    def trusts(self, peer: str | None) -> bool:
        """Whether ``peer`` (the socket's address) is one of the trusted proxies."""
        address = self._parse(peer) if peer else None
        return address is not None and self._trusted.trusts(address)

    def resolve(self, peer: str | None, forwarding: str | None = None) -> IPAddress | None:
        """The client's address; ``None`` when it is unknown: no peer, or a trusted
        proxy's hop that is no address (``unknown`` as RFC 7239 allows, a unix socket's
        ``unix:``, garbage). That proxy does not know its client either, and taking the
        proxy's own address instead would admit anyone through an allow list naming it.

        ``forwarding`` is the value of the configured header (all its lines joined with
        commas: a proxy may add a line instead of extending the first).
        """
        address = self._parse(peer) if peer else None
        if address is None or not self._trusted.trusts(address):
            return address
        if not forwarding:
            return address
        if self.header == "forwarded":
            hops = _forwarded_for_values(forwarding)
        else:
            hops = [hop.strip() for hop in forwarding.split(",")]
        for hop in reversed(hops):
            hop_address = self._parse(_strip_port(hop))
            if hop_address is None:
                return None  # the client is unknown: believe nothing further left
            address = hop_address
            if not self._trusted.trusts(hop_address):
                return hop_address
        return address


def _forwarded_for_values(header: str) -> list[str]:
    values = []
    for element in header.split(","):
        for pair in element.split(";"):
            name, _, value = pair.strip().partition("=")
            if name.strip().lower() == "for":
                values.append(value.strip().strip('"'))
    return values


def _strip_port(hop: str) -> str:
    """``[2001:db8::1]:443`` → ``2001:db8::1``; ``192.0.2.1:80`` → ``192.0.2.1``."""
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else hop
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


def forwarded_proto(header: ForwardingHeader, value: str | None) -> str | None:
    """The scheme the nearest proxy received the request with: the last entry of
    ``X-Forwarded-Proto`` (with ``header="x-forwarded-for"``) or the last ``proto=`` of
    ``Forwarded``; ``None`` when not given. Believe it only from a trusted proxy."""
    if not value:
        return None
    if header == "forwarded":
        protos = [
            pair.strip().partition("=")[2].strip().strip('"')
            for element in value.split(",")
            for pair in element.split(";")
            if pair.strip().lower().startswith("proto=")
        ]
        return protos[-1].lower() if protos else None
    last = value.split(",")[-1].strip().lower()
    return last or None
