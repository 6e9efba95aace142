"""Which address a request comes from, behind trusted proxies (``ClientIpResolver``)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from types import SimpleNamespace

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from authgate.api.access import client_address
from authgate.security.clientip import ClientIpResolver
from authgate.security.networks import IPAddress, TrustedProxies, parse_address

TRUSTED = ["10.0.0.0/8", "2001:db8:ffff::/48"]
PROXY = "10.0.0.2"  # the socket peer: a trusted proxy
INNER_PROXY = "10.0.0.1"
CLIENT = "198.51.100.7"
FORGED = "203.0.113.66"


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@pytest.fixture
def resolver() -> ClientIpResolver:
    return ClientIpResolver(TrustedProxies.of(TRUSTED))


@pytest.fixture
def rfc7239() -> ClientIpResolver:
    """Trusting the same proxies, configured to read RFC 7239 Forwarded."""
    return ClientIpResolver(TrustedProxies.of(TRUSTED), header="forwarded")


@pytest.fixture
def trusts_nobody() -> ClientIpResolver:
    return ClientIpResolver(TrustedProxies.of([]))


# -- no trusted proxies ---------------------------------------------------------------------


def test_without_trusted_proxies_the_peer_is_the_client(trusts_nobody: ClientIpResolver) -> None:
    """With no trusted proxy configured, the socket peer is the client."""
    assert trusts_nobody.resolve(CLIENT) == ip(CLIENT)


def test_without_trusted_proxies_forwarding_headers_are_ignored(
    trusts_nobody: ClientIpResolver,
) -> None:
    """With no trusted proxy, X-Forwarded-For and Forwarded cannot change the address."""
    resolved = trusts_nobody.resolve(CLIENT, f"{FORGED}, 10.0.0.1")

    assert resolved == ip(CLIENT)


def test_an_empty_trust_list_does_not_mean_trust_everyone(
    trusts_nobody: ClientIpResolver,
) -> None:
    """An empty trusted-proxy list trusts no one (an empty allow list, by contrast, permits all)."""
    assert trusts_nobody.resolve(PROXY, FORGED) == ip(PROXY)


def test_untrusted_peer_cannot_spoof_with_x_forwarded_for(resolver: ClientIpResolver) -> None:
    """A peer outside the trusted proxies is the client, whatever X-Forwarded-For says."""
    assert resolver.resolve(CLIENT, f"{FORGED}, {INNER_PROXY}") == ip(CLIENT)


def test_untrusted_peer_cannot_spoof_with_forwarded(rfc7239: ClientIpResolver) -> None:
    """A peer outside the trusted proxies is the client, whatever Forwarded says."""
    assert rfc7239.resolve(CLIENT, f"for={FORGED}, for={INNER_PROXY}") == ip(CLIENT)


def test_no_peer_resolves_to_none(resolver: ClientIpResolver) -> None:
    """Without a peer address there is no client address, even with headers."""
    assert resolver.resolve(None) is None
    assert resolver.resolve(None, CLIENT) is None
    assert resolver.resolve("", CLIENT) is None


def test_an_unparsable_peer_resolves_to_none(resolver: ClientIpResolver) -> None:
    """A peer that is not an IP address (a Unix socket path, say) gives None."""
    assert resolver.resolve("/run/authgate.sock", CLIENT) is None


# -- X-Forwarded-For ------------------------------------------------------------------------


def test_trusted_peer_without_headers_is_the_client(resolver: ClientIpResolver) -> None:
    """A trusted peer that forwards no header is itself the client."""
    assert resolver.resolve(PROXY) == ip(PROXY)
    assert resolver.resolve(PROXY, "") == ip(PROXY)


def test_trusted_peer_single_hop_gives_the_client(resolver: ClientIpResolver) -> None:
    """Behind one trusted proxy, the X-Forwarded-For entry is the client."""
    assert resolver.resolve(PROXY, CLIENT) == ip(CLIENT)


def test_trusted_hops_are_skipped_to_the_client(resolver: ClientIpResolver) -> None:
    """ "client, proxy1" from a trusted peer, proxy1 trusted: the client."""
    assert resolver.resolve(PROXY, f"{CLIENT}, {INNER_PROXY}") == ip(CLIENT)


def test_rightmost_untrusted_hop_wins_over_forged_entries(resolver: ClientIpResolver) -> None:
    """ "spoofed, real, trusted-proxy": the rightmost untrusted entry, never the forged one."""
    resolved = resolver.resolve(PROXY, f"{FORGED}, {CLIENT}, {INNER_PROXY}")

    assert resolved == ip(CLIENT)


def test_all_hops_trusted_gives_the_leftmost(resolver: ClientIpResolver) -> None:
    """When every hop is a trusted proxy, the leftmost one is the client."""
    resolved = resolver.resolve(PROXY, "10.9.9.9, 10.0.0.5, 10.0.0.1")

    assert resolved == ip("10.9.9.9")


def test_whitespace_around_hops_is_ignored(resolver: ClientIpResolver) -> None:
    """Spaces and tabs around X-Forwarded-For entries do not matter."""
    assert resolver.resolve(PROXY, f"  {CLIENT} ,\t{INNER_PROXY}  ") == ip(CLIENT)


def test_garbage_hop_makes_the_client_unknown(resolver: ClientIpResolver) -> None:
    """Walking left, an unparsable hop stops the walk: the trusted proxy that wrote it
    does not know its client, so neither does authgate (None), and nothing to the left
    of the garbage is believed. Taking the last trusted address instead would let anyone
    behind that proxy through an allow list naming it."""
    assert resolver.resolve(PROXY, f"{FORGED}, unknown, {INNER_PROXY}") is None


def test_garbage_as_the_rightmost_hop_makes_the_client_unknown(
    resolver: ClientIpResolver,
) -> None:
    """If the hop the trusted peer appended is garbage (nginx's ``unix:`` for a client on
    a unix socket), the client is unknown, not the peer."""
    assert resolver.resolve(PROXY, f"{FORGED}, not-an-ip") is None
    assert resolver.resolve(PROXY, f"{FORGED}, unix:") is None
    assert resolver.resolve(PROXY, f"{FORGED},") is None


def test_ipv4_hop_with_a_port_is_accepted(resolver: ClientIpResolver) -> None:
    """An X-Forwarded-For entry 198.51.100.7:5555 is the address without the port."""
    assert resolver.resolve(PROXY, f"{CLIENT}:5555") == ip(CLIENT)


def test_ipv6_hops_are_accepted(resolver: ClientIpResolver) -> None:
    """Bare and bracketed IPv6 entries (with a port) parse; trusted IPv6 hops are skipped."""
    header = "2001:db8::1, [2001:db8:ffff::2]:443"

    assert resolver.resolve(PROXY, header) == ip("2001:db8::1")


def test_ipv4_mapped_hop_is_unwrapped(resolver: ClientIpResolver) -> None:
    """An IPv4-mapped IPv6 entry comes back as IPv4 and is checked for trust as IPv4."""
    assert resolver.resolve(PROXY, f"::ffff:{CLIENT}") == ip(CLIENT)
    resolved = resolver.resolve(PROXY, f"{CLIENT}, ::ffff:{INNER_PROXY}")
    assert resolved == ip(CLIENT)


def test_ipv4_mapped_peer_is_trusted_as_ipv4(resolver: ClientIpResolver) -> None:
    """A dual-stack peer ::ffff:10.0.0.1 is 10.0.0.1, so it is trusted and its header read."""
    assert resolver.resolve("::ffff:10.0.0.1", CLIENT) == ip(CLIENT)
    assert resolver.resolve("::ffff:10.0.0.1") == ip("10.0.0.1")


def test_ipv4_mapped_untrusted_peer_is_returned_as_ipv4(resolver: ClientIpResolver) -> None:
    """An untrusted dual-stack peer is returned unwrapped and its headers ignored."""
    resolved = resolver.resolve(f"::ffff:{CLIENT}", FORGED)

    assert resolved == ip(CLIENT)


def test_trusted_ipv6_peer(resolver: ClientIpResolver) -> None:
    """A peer inside a trusted IPv6 network has its X-Forwarded-For read."""
    assert resolver.resolve("2001:db8:ffff::9", CLIENT) == ip(CLIENT)


# -- RFC 7239 Forwarded ---------------------------------------------------------------------


def test_forwarded_header_with_quoted_ipv6_and_port(rfc7239: ClientIpResolver) -> None:
    """for=192.0.2.60;proto=http, for="[2001:db8::1]:4711": the rightmost untrusted hop."""
    header = 'for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"'

    assert rfc7239.resolve(PROXY, header) == ip("2001:db8::1")


def test_forwarded_header_skips_trusted_hops(rfc7239: ClientIpResolver) -> None:
    """Trusted hops in Forwarded are skipped like in X-Forwarded-For."""
    header = f'for=192.0.2.60;proto=http, for="[2001:db8:ffff::1]:4711", for={INNER_PROXY}'

    assert rfc7239.resolve(PROXY, header) == ip("192.0.2.60")


def test_forwarded_header_with_ipv4_and_port(rfc7239: ClientIpResolver) -> None:
    """for="192.0.2.43:47011" is 192.0.2.43."""
    assert rfc7239.resolve(PROXY, 'for="192.0.2.43:47011"') == ip("192.0.2.43")


def test_forwarded_header_parameters_in_any_order_and_case(rfc7239: ClientIpResolver) -> None:
    """The for parameter is found among others, whatever its case (RFC 7239 section 4)."""
    header = f"proto=https;By=10.0.0.2;For={CLIENT};host=example.com"

    assert rfc7239.resolve(PROXY, header) == ip(CLIENT)


def test_forwarded_unknown_hop_stops_the_walk(rfc7239: ClientIpResolver) -> None:
    """for=unknown (or an obfuscated _hidden) is not an address: the walk stops there,
    and the client is unknown."""
    assert rfc7239.resolve(PROXY, f"for={FORGED}, for=unknown") is None
    assert rfc7239.resolve(PROXY, f"for={FORGED}, for=_hidden") is None


def test_forwarded_without_for_gives_the_peer(rfc7239: ClientIpResolver) -> None:
    """A Forwarded header without any for= parameter leaves the peer as the client."""
    assert rfc7239.resolve(PROXY, "proto=https;host=example.com") == ip(PROXY)


def test_forwarded_from_an_untrusted_peer_is_ignored(rfc7239: ClientIpResolver) -> None:
    """Forwarded sent by an untrusted peer changes nothing."""
    assert rfc7239.resolve(CLIENT, 'for="[2001:db8::1]:4711"') == ip(CLIENT)


def test_only_the_configured_forwarding_header_is_read(resolver: ClientIpResolver) -> None:
    """A proxy that appends to X-Forwarded-For passes a client's own Forwarded header
    through untouched: the resolver reads one configured header, never the other."""
    assert resolver.header == "x-forwarded-for"
    assert ClientIpResolver(TrustedProxies.of(TRUSTED), header="forwarded").header == "forwarded"
    # The Forwarded syntax is not X-Forwarded-For: read as such it yields no address.
    assert resolver.resolve(PROXY, f"for={FORGED}") is None


# -- properties -----------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def addresses_in(text: str) -> frozenset[IPAddress]:
    """Every address some substring of ``text`` parses to (the oracle for "appears")."""
    found = set()
    for start in range(len(text)):
        for end in range(start + 1, len(text) + 1):
            address = parse_address(text[start:end])
            if address is not None:
                found.add(address)
    return frozenset(found)


TRUSTED_LIST = TrustedProxies.of(TRUSTED)
RESOLVER = ClientIpResolver(TRUSTED_LIST)  # hypothesis tests cannot use fixtures
RFC7239_RESOLVER = ClientIpResolver(TRUSTED_LIST, header="forwarded")

ipv4_texts = st.ip_addresses(v=4).map(str)
ipv6_texts = st.ip_addresses(v=6).map(str)
trusted_texts = st.sampled_from(
    ["10.0.0.1", "10.255.0.3", "::ffff:10.0.0.9", "2001:db8:ffff::1", "[2001:db8:ffff::5]:80"]
)
hop_texts = st.one_of(
    ipv4_texts,
    ipv6_texts,
    trusted_texts,
    ipv4_texts.map(lambda a: f"{a}:8080"),
    ipv6_texts.map(lambda a: f"[{a}]:443"),
    st.sampled_from(["unknown", "_hidden", "", " ", "[", "[::1", "1.2.3.4:", "::ffff:1.2.3.4"]),
    st.text(max_size=8),
)
peers = st.one_of(
    st.none(),
    trusted_texts.filter(lambda text: not text.startswith("[")),
    ipv4_texts,
    st.text(max_size=12),
)
xff_headers = st.one_of(
    st.none(), st.text(max_size=40), st.lists(hop_texts, max_size=4).map(", ".join)
)
forwarded_headers = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.lists(hop_texts, max_size=4).map(lambda hops: ", ".join(f'for="{h}"' for h in hops)),
    st.lists(hop_texts, max_size=4).map(
        lambda hops: ",".join(f"for={h};proto=https" for h in hops)
    ),
)


@given(peer=peers, forwarded_for=xff_headers, forwarded=forwarded_headers)
@example(peer="10.0.0.1", forwarded_for="[", forwarded=None)
@example(
    peer="10.0.0.1",
    forwarded_for=None,
    forwarded='for="[::1',
)
@example(peer="10.0.0.1", forwarded_for="\udcff, \x00", forwarded="for=\udcff")
@example(peer="10.0.0.1", forwarded_for="fe80::1%eth0, 10.0.0.3", forwarded=None)
@example(peer="10.0.0.1", forwarded_for=None, forwarded="for=;for==;=for;for")
def test_resolve_never_raises_and_returns_a_known_address(
    peer: str | None, forwarded_for: str | None, forwarded: str | None
) -> None:
    """For any header text, resolve returns None, the peer, or an address in the header
    (None from a trusted peer only when a hop is no address)."""
    peer_address = parse_address(peer) if peer else None
    for resolver, header in ((RESOLVER, forwarded_for), (RFC7239_RESOLVER, forwarded)):
        resolved = resolver.resolve(peer, header)
        if peer_address is None:
            assert resolved is None
            continue
        allowed: set[IPAddress | None] = {peer_address}
        if TRUSTED_LIST.trusts(peer_address):  # headers count only from a trusted peer
            # ... and a hop that is no address there makes the client unknown.
            allowed |= {*addresses_in(header or ""), None}
        assert resolved in allowed


@given(
    hops=st.lists(st.one_of(ipv4_texts, ipv6_texts, trusted_texts), min_size=1, max_size=5),
    as_forwarded=st.booleans(),
)
def test_well_formed_chain_resolves_to_the_rightmost_untrusted_hop(
    hops: list[str], as_forwarded: bool
) -> None:
    """From a trusted peer, a chain of valid addresses resolves to its rightmost untrusted
    hop, or to its leftmost hop when every hop is trusted."""
    addresses = [parse_address(_without_port(hop)) for hop in hops]
    expected = next(
        (a for a in reversed(addresses) if a is not None and not TRUSTED_LIST.trusts(a)),
        addresses[0],
    )
    if as_forwarded:
        resolved = RFC7239_RESOLVER.resolve(PROXY, ", ".join(f'for="{h}"' for h in hops))
    else:
        resolved = RESOLVER.resolve(PROXY, ", ".join(hops))

    assert resolved == expected


def _without_port(hop: str) -> str:
    return hop[1 : hop.index("]")] if hop.startswith("[") else hop


# -- the request path's lookup (access.client_address) -------------------------------------


@given(peer=peers, forwarded_for=xff_headers)
def test_peer_lookup_says_what_trusts_and_resolve_say(
    peer: str | None, forwarded_for: str | None
) -> None:
    """``peer`` (memoised) gives the peer's address and whether it is a trusted proxy;
    for an untrusted peer that address is what ``resolve`` answers whatever the header."""
    address, trusted = RESOLVER.peer(peer)
    assert address == (parse_address(peer) if peer else None)
    assert trusted is RESOLVER.trusts(peer)
    if not trusted:
        assert address == RESOLVER.resolve(peer, forwarded_for)


def _scope(peer: str | None, headers: list[tuple[bytes, bytes]]) -> dict[str, object]:
    return {"client": (peer, 50000) if peer else None, "headers": headers}


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        (CLIENT, f"{FORGED}", CLIENT),  # an untrusted peer's header is ignored
        (PROXY, f"{FORGED}, {CLIENT}", CLIENT),  # a proxy's is walked from the right
        (PROXY, None, PROXY),
        (None, f"{FORGED}", None),
    ],
)
def test_client_address_reads_the_header_only_from_a_trusted_proxy(
    resolver: ClientIpResolver, peer: str | None, header: str | None, expected: str | None
) -> None:
    headers = [(b"x-forwarded-for", header.encode())] if header else []
    services = SimpleNamespace(client_ips=resolver)
    scope = _scope(peer, headers)

    address = client_address(scope, services)  # type: ignore[arg-type]

    assert address == (ip(expected) if expected else None)
    assert client_address(scope, services) is address  # type: ignore[arg-type]  # once per request


def test_the_same_peer_gives_the_same_address_object(resolver: ClientIpResolver) -> None:
    """The gate recognises a key's latest address by identity: one object per peer."""
    services = SimpleNamespace(client_ips=resolver)
    first = client_address(_scope(CLIENT, []), services)  # type: ignore[arg-type]
    second = client_address(_scope(CLIENT, []), services)  # type: ignore[arg-type]
    assert first is second
