"""IP addresses and allow lists (IPv4 and IPv6), parsed once, matched in microseconds.

Allow-list entries are validated strictly (an address, or an address and a prefix
length), with UTMStack's messages. A CIDR with host bits set (``10.0.0.5/24``) means
its network (``10.0.0.0/24``), as UTMStack's SubnetUtils reads it, and is stored and
shown in that form, so what the list admits is always visible; a bare address is a /32
(IPv4) or /128 (IPv6).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Self

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ENTRIES = 100
# One IPv6 customer gets a /64 (RFC 6177; SLAAC and privacy addresses vary only the
# lower 64 bits), so a single machine can send from 2**64 addresses of its /64.
IPV6_THROTTLE_PREFIX = 64

INVALID_ADDRESS = "Invalid IP address format"
INVALID_CIDR = "Invalid CIDR format"
DUPLICATE = "This IP is already added"


class AllowEntryError(ValueError):
    """An allow-list entry is not a valid address or network (message is user-facing)."""


def parse_address(text: str) -> IPAddress | None:
    """An IP address, with IPv4-mapped IPv6 (``::ffff:10.1.2.3``) unwrapped to IPv4 and
    an IPv6 zone (``fe80::1%eth0``) dropped; ``None`` if ``text`` is not an address."""
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def throttle_network(address: str) -> str:
    """The unit that brute-force counters count per: an IPv4 address itself, an IPv6
    address's /64 (``2001:db8:1:2::/64``), so rotating addresses within one's own /64
    does not reset the counters. Text that is no address is returned unchanged."""
    parsed = parse_address(address)
    if parsed is None:
        return address
    if parsed.version == 4:
        return str(parsed)
    network = ipaddress.IPv6Network((int(parsed) >> 64 << 64, IPV6_THROTTLE_PREFIX))
    return str(network)


def network_of(address: IPAddress | None) -> object:
    """``throttle_network``'s unit for a parsed address, as a dictionary key (no text):
    an IPv4 address (or None) itself, an IPv6 address's /64 as a number."""
    if address is None or address.version == 4:
        return address
    return int(address) >> (128 - IPV6_THROTTLE_PREFIX)


def network_text_prefix(network: str) -> str:
    """Text that every address of the IPv6 ``network`` (a ``throttle_network`` /64)
    starts with when written canonically (RFC 5952, as audit records store it): its
    leading hextets up to the first zero one, which ``::`` may swallow. "" when the first
    hextet is zero or ``network`` is no IPv6 network. A filter to narrow a search by,
    never a match: the addresses it finds are checked with ``throttle_network``."""
    try:
        parsed = ipaddress.IPv6Network(network)
    except ValueError:
        return ""
    prefix = ""
    for hextet in parsed.network_address.exploded.split(":")[: IPV6_THROTTLE_PREFIX // 16]:
        if int(hextet, 16) == 0:
            break
        prefix += f"{int(hextet, 16):x}:"
    return prefix


def covers_every_address(entries: Iterable[str]) -> bool:
    """Whether the allow list admits every IPv4 or every IPv6 address: ``0.0.0.0/0``,
    ``::/0``, or networks adding up to one of them (``0.0.0.0/1`` + ``128.0.0.0/1``).
    Such a list restricts nothing for that address family."""
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for entry in entries:
        network = parse_allow_entry(entry)
        if isinstance(network, ipaddress.IPv4Network):
            v4.append(network)
        else:
            v6.append(network)
    return _whole_family(ipaddress.collapse_addresses(v4)) or _whole_family(
        ipaddress.collapse_addresses(v6)
    )


def _whole_family(collapsed: Iterable[IPNetwork]) -> bool:
    networks = list(collapsed)
    return len(networks) == 1 and networks[0].prefixlen == 0


def parse_allow_entry(text: str) -> IPNetwork:
    """One allow-list entry: an address (a /32 or /128) or a CIDR network.

    Raises:
        AllowEntryError: with UTMStack's message.
    """
    entry = text.strip()
    if "%" in entry:  # an IPv6 zone names an interface of one machine: meaningless here
        raise AllowEntryError(INVALID_CIDR if "/" in entry else INVALID_ADDRESS)
    if "/" not in entry:
        address = parse_address(entry)
        if address is None:
            raise AllowEntryError(INVALID_ADDRESS)
        return ipaddress.ip_network(address)
    address_part, _, prefix = entry.partition("/")
    if parse_address(address_part) is None or not prefix.isdigit():
        raise AllowEntryError(INVALID_CIDR)
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise AllowEntryError(INVALID_CIDR) from None
    mapped = _unwrap_mapped_network(network)
    return mapped or network


def normalize_allow_list(entries: Sequence[str]) -> tuple[list[str], dict[int, str]]:
    """Validate entries; return their canonical forms and per-index error messages."""
    canonical: list[str] = []
    errors: dict[int, str] = {}
    seen: set[IPNetwork] = set()
    for index, entry in enumerate(entries):
        try:
            network = parse_allow_entry(entry)
        except AllowEntryError as error:
            errors[index] = str(error)
            continue
        if network in seen:
            errors[index] = DUPLICATE
            continue
        seen.add(network)
        canonical.append(str(network) if network.num_addresses > 1 else str(network[0]))
    return canonical, errors


@dataclass(frozen=True, slots=True)
class NetworkSet:
    """Networks as precomputed (network, mask) integers per IP version, matched in
    microseconds. What an empty set means is its subclass's business: an API key's
    :class:`AllowList` admits everyone, :class:`TrustedProxies` trusts no one."""

    v4: tuple[tuple[int, int], ...]
    v6: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, entries: Iterable[str]) -> Self:
        """From already validated entries (as stored or configured)."""
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for entry in entries:
            network = parse_allow_entry(entry)
            pair = (int(network.network_address), int(network.netmask))
            (v4 if network.version == 4 else v6).append(pair)
        return cls(v4=tuple(v4), v6=tuple(v6))

    @property
    def is_empty(self) -> bool:
        return not self.v4 and not self.v6

    def contains(self, address: IPAddress) -> bool:
        number = int(address)
        for network, mask in self.v4 if address.version == 4 else self.v6:
            if number & mask == network:
                return True
        return False


class AllowList(NetworkSet):
    """The networks an API key may be used from. An empty allow list permits every
    address (UTMStack: no restriction configured)."""

    __slots__ = ()

    @property
    def is_unrestricted(self) -> bool:
        return self.is_empty

    def permits(self, address: IPAddress) -> bool:
        return self.is_empty or self.contains(address)


class TrustedProxies(NetworkSet):
    """The proxies whose forwarding header is believed (``AUTHGATE_TRUSTED_PROXIES``).
    An empty list trusts no one: the socket peer is the client."""

    __slots__ = ()

    def trusts(self, address: IPAddress) -> bool:
        return self.contains(address)


def _unwrap_mapped_network(network: IPNetwork) -> ipaddress.IPv4Network | None:
    """``::ffff:10.0.0.0/104`` → ``10.0.0.0/8``: clients arrive unwrapped, so must entries."""
    if not isinstance(network, ipaddress.IPv6Network) or network.prefixlen < 96:
        return None
    mapped = network.network_address.ipv4_mapped
    if mapped is None:
        return None
    return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
