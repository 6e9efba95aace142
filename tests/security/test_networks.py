"""Allow-list entries, their normalisation and matching (``authgate.security.networks``)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from authgate.security.networks import (
    DUPLICATE,
    INVALID_ADDRESS,
    INVALID_CIDR,
    AllowEntryError,
    AllowList,
    TrustedProxies,
    network_text_prefix,
    normalize_allow_list,
    parse_address,
    parse_allow_entry,
    throttle_network,
)

MAPPED_RANGE = ipaddress.IPv6Network("::ffff:0:0/96")


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def client(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A client address as it reaches the allow list: parsed and unwrapped."""
    address = parse_address(text)
    assert address is not None
    return address


def entry_error(text: str) -> str:
    with pytest.raises(AllowEntryError) as caught:
        parse_allow_entry(text)
    return str(caught.value)


# -- parse_address --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("  192.0.2.1\t", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::ffff:c000:201", "192.0.2.1"),
        ("::1", "::1"),
    ],
)
def test_parse_address_returns_the_address_with_mapped_ipv6_unwrapped(
    text: str, expected: str
) -> None:
    """Addresses parse to ipaddress objects; IPv4-mapped IPv6 comes back as IPv4."""
    assert parse_address(text) == ip(expected)


@pytest.mark.parametrize(
    "text", ["", "abc", "1.2.3", "1.2.3.4.5", "256.0.0.1", "01.2.3.4", "1.2.3.4/32", "::g"]
)
def test_parse_address_returns_none_for_non_addresses(text: str) -> None:
    """Anything that is not a single address parses to None rather than raising."""
    assert parse_address(text) is None


# -- parse_allow_entry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1/32"),
        ("2001:db8::1", "2001:db8::1/128"),
        (" 192.0.2.1 ", "192.0.2.1/32"),
        ("::ffff:192.0.2.1", "192.0.2.1/32"),
    ],
)
def test_a_single_address_becomes_a_host_network(text: str, expected: str) -> None:
    """A bare IPv4 address becomes a /32, an IPv6 address a /128."""
    network = parse_allow_entry(text)

    assert network == ipaddress.ip_network(expected)
    assert network.num_addresses == 1


@pytest.mark.parametrize(
    "text",
    ["10.0.0.0/8", "192.168.1.0/24", "192.0.2.7/32", "0.0.0.0/0", "2001:db8::/32", "::/0",
     "2001:db8::1/128", "fe80::/10"],
)  # fmt: skip
def test_cidrs_in_canonical_form_are_accepted(text: str) -> None:
    """A CIDR without host bits parses to that very network."""
    assert parse_allow_entry(text) == ipaddress.ip_network(text)


def test_an_ipv4_mapped_cidr_is_unwrapped_to_ipv4() -> None:
    """::ffff:10.0.0.0/104 is the IPv4 network 10.0.0.0/8, as clients arrive unwrapped."""
    assert parse_allow_entry("::ffff:10.0.0.0/104") == ipaddress.ip_network("10.0.0.0/8")


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("10.0.0.1/8", "10.0.0.0/8"),
        ("192.168.1.77/24", "192.168.1.0/24"),
        ("2001:db8::1/32", "2001:db8::/32"),
    ],
)
def test_host_bits_set_mean_the_network(text: str, suggestion: str) -> None:
    """A CIDR with host bits means its network, as UTMStack's SubnetUtils reads it
    (issue 13, section 5), and is written as that network."""
    assert parse_allow_entry(text) == ipaddress.ip_network(suggestion)
    assert normalize_allow_list([text]) == ([suggestion], {})


@pytest.mark.parametrize("text", ["abc", "1.2.3", "256.1.1.1", "1.2.3.4.5", "", "   ", "::g"])
def test_an_invalid_address_is_refused(text: str) -> None:
    """An entry without / that is not an address: Invalid IP address format."""
    assert entry_error(text) == INVALID_ADDRESS


@pytest.mark.parametrize(
    "text",
    ["1.2.3.4/33", "2001:db8::/129", "1.2.3.4/", "1.2.3.4/x", "abc/8", "/8", "1.2.3.4/-1",
     "1.2.3.4/+8", "1.2.3.4/8/8", "1.2.3.4/255.0.0.0", "1.2.3.4/²", "1.2.3.4 /8"],
)  # fmt: skip
def test_an_invalid_cidr_is_refused(text: str) -> None:
    """Bad prefix lengths, empty or non-numeric prefixes, bad addresses: Invalid CIDR format."""
    assert entry_error(text).startswith(INVALID_CIDR)


# -- normalize_allow_list -------------------------------------------------------------------


def test_normalize_returns_canonical_forms() -> None:
    """Hosts are written without /32 or /128, networks as CIDRs, mapped IPv6 unwrapped."""
    canonical, errors = normalize_allow_list(
        [" 192.0.2.1 ", "192.0.2.8/32", "10.0.0.0/8", "2001:DB8::1", "2001:db8::/32",
         "::ffff:203.0.113.5", "::ffff:172.16.0.0/108"]
    )  # fmt: skip

    assert errors == {}
    assert canonical == [
        "192.0.2.1",
        "192.0.2.8",
        "10.0.0.0/8",
        "2001:db8::1",
        "2001:db8::/32",
        "203.0.113.5",
        "172.16.0.0/12",
    ]


def test_normalize_reports_errors_by_index_and_keeps_the_good_entries() -> None:
    """Each bad entry's message is keyed by its index; valid entries are still returned."""
    canonical, errors = normalize_allow_list(
        ["192.0.2.1", "nonsense", "10.0.0.0/8", "10.0.0.0/33", "2001:db8::/32", "10.0.0.9/8"]
    )

    assert canonical == ["192.0.2.1", "10.0.0.0/8", "2001:db8::/32"]
    assert errors[1] == INVALID_ADDRESS
    assert errors[3] == INVALID_CIDR
    assert errors[5] == DUPLICATE  # 10.0.0.9/8 is 10.0.0.0/8
    assert set(errors) == {1, 3, 5}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.1", " 192.0.2.1 "),
        ("192.0.2.1", "192.0.2.1/32"),
        ("10.0.0.0/8", "10.0.0.0/08"),
        ("1.2.3.4", "::ffff:1.2.3.4"),
        ("10.0.0.0/8", "::ffff:10.0.0.0/104"),
        ("2001:db8::1", "2001:DB8:0:0:0:0:0:1"),
        ("2001:db8::/32", "2001:0db8::/32"),
    ],
)
def test_the_same_network_written_differently_is_a_duplicate(first: str, second: str) -> None:
    """A network already in the list, however written, is refused as a duplicate."""
    canonical, errors = normalize_allow_list([first, second])

    assert len(canonical) == 1
    assert errors == {1: DUPLICATE}


def test_overlapping_but_different_networks_are_not_duplicates() -> None:
    """A host inside a listed network, or a sub-network, is a separate entry."""
    canonical, errors = normalize_allow_list(["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3"])

    assert errors == {}
    assert canonical == ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3"]


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param(["fe80::1%eth0", "fe80::1%eth1", "fe80::1"], id="host-with-zones"),
        pytest.param(["fe80::/64", "fe80::%eth0/64"], id="network-with-zone"),
    ],
)
def test_a_zone_id_does_not_defeat_duplicate_detection(entries: list[str]) -> None:
    """Entries differing only by an IPv6 zone id (%eth0) match the same clients, so at most
    one of them is kept and no canonical entry carries a zone id."""
    canonical, errors = normalize_allow_list(entries)

    assert len(canonical) <= 1
    assert len(canonical) + len(errors) == len(entries)
    assert not any("%" in entry for entry in canonical)


def test_normalize_of_an_empty_list_is_empty() -> None:
    """No entries: no canonical forms and no errors."""
    assert normalize_allow_list([]) == ([], {})


entry_texts = st.one_of(
    st.text(max_size=50),
    st.ip_addresses().map(str),
    st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(), st.integers(-1, 130)),
    st.from_regex(r"[0-9a-fA-F:.%/ ]{0,45}", fullmatch=True),
)


@given(entries=st.lists(entry_texts, max_size=8))
@example(entries=["fe80::1%eth0", "fe80::1%eth1"])
@example(entries=["::%/0", "1.2.3.4/٨", "\udcff", "1.2.3.4/" + "0" * 40 + "8"])
def test_normalize_never_raises_and_accounts_for_every_entry(entries: list[str]) -> None:
    """Whatever text is given, normalize returns (never raises) and every index is either
    a canonical entry or an error."""
    canonical, errors = normalize_allow_list(entries)

    assert set(errors) <= set(range(len(entries)))
    assert len(canonical) + len(errors) == len(entries)
    assert all(isinstance(message, str) and message for message in errors.values())


@given(entries=st.lists(entry_texts, max_size=8))
@example(entries=["fe80::1%eth0", "fe80::1%eth1"])
def test_normalize_never_returns_the_same_canonical_entry_twice(entries: list[str]) -> None:
    """The canonical list holds no repeated entry, whatever was typed."""
    canonical, _ = normalize_allow_list(entries)

    assert len(set(canonical)) == len(canonical)


@given(entries=st.lists(entry_texts, max_size=8))
def test_canonical_forms_normalize_to_themselves(entries: list[str]) -> None:
    """Normalizing a canonical list again changes nothing and reports no error."""
    canonical, _ = normalize_allow_list(entries)

    assert normalize_allow_list(canonical) == (canonical, {})


# -- AllowList and TrustedProxies ---------------------------------------------------------


def test_an_empty_allow_list_permits_everything() -> None:
    """No entries means no restriction: every IPv4 and IPv6 address is permitted."""
    allow = AllowList.of([])

    assert allow.is_unrestricted
    assert allow.permits(ip("203.0.113.9"))
    assert allow.permits(ip("2001:db8::9"))


def test_an_empty_trusted_proxy_list_trusts_no_one() -> None:
    """The opposite reading of "empty": without trusted proxies no peer is believed."""
    proxies = TrustedProxies.of([])

    assert proxies.is_empty
    assert not proxies.trusts(ip("203.0.113.9"))
    assert not proxies.trusts(ip("2001:db8::9"))


@pytest.mark.parametrize(
    ("address", "inside"), [("10.1.2.3", True), ("11.0.0.1", False), ("2001:db8::1", False)]
)
def test_the_same_entries_mean_the_same_networks_for_both(address: str, inside: bool) -> None:
    """With entries, an allow list permits and a proxy list trusts exactly its networks."""
    assert AllowList.of(["10.0.0.0/8"]).permits(ip(address)) is inside
    assert TrustedProxies.of(["10.0.0.0/8"]).trusts(ip(address)) is inside


def test_a_non_empty_allow_list_is_restricted() -> None:
    """A list with any entry is not unrestricted."""
    assert not AllowList.of(["192.0.2.1"]).is_unrestricted
    assert not AllowList.of(["2001:db8::1"]).is_unrestricted


@pytest.mark.parametrize(
    ("entries", "address", "permitted"),
    [
        (["10.0.0.0/8"], "10.0.0.0", True),
        (["10.0.0.0/8"], "10.255.255.255", True),
        (["10.0.0.0/8"], "11.0.0.0", False),
        (["10.0.0.0/8"], "9.255.255.255", False),
        (["192.0.2.7"], "192.0.2.7", True),
        (["192.0.2.7/32"], "192.0.2.8", False),
        (["192.0.2.7", "198.51.100.0/24"], "198.51.100.200", True),
        (["2001:db8::/32"], "2001:db8:ffff::1", True),
        (["2001:db8::/32"], "2001:db9::1", False),
        (["2001:db8::1/128"], "2001:db8::1", True),
        (["2001:db8::1"], "2001:db8::2", False),
    ],
)
def test_permits_ipv4_and_ipv6_addresses_inside_listed_networks(
    entries: list[str], address: str, permitted: bool
) -> None:
    """An address is permitted exactly when it lies in one of the listed networks."""
    assert AllowList.of(entries).permits(client(address)) is permitted


def test_an_ipv4_mapped_client_matches_an_ipv4_network() -> None:
    """A dual-stack socket's ::ffff:10.1.2.3, unwrapped by parse_address, matches 10.0.0.0/8."""
    allow = AllowList.of(["10.0.0.0/8"])

    assert allow.permits(client("::ffff:10.1.2.3"))
    assert not allow.permits(client("::ffff:11.1.2.3"))


def test_an_ipv4_mapped_entry_matches_a_plain_ipv4_client() -> None:
    """An entry written as ::ffff:192.0.2.1 permits the IPv4 client 192.0.2.1."""
    assert AllowList.of(["::ffff:192.0.2.1"]).permits(client("192.0.2.1"))


def test_ipv4_zero_prefix_permits_every_ipv4_address_and_no_ipv6() -> None:
    """0.0.0.0/0 permits every IPv4 address but no IPv6 address."""
    allow = AllowList.of(["0.0.0.0/0"])

    ipv4 = ("0.0.0.0", "127.0.0.1", "255.255.255.255", "::ffff:8.8.8.8")  # noqa: S104 - matched
    for address in ipv4:
        assert allow.permits(client(address)), address
    for address in ("::", "::1", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"):
        assert not allow.permits(client(address)), address


def test_ipv6_zero_prefix_permits_every_ipv6_address_and_no_ipv4() -> None:
    """::/0 permits every IPv6 address but no IPv4 address."""
    allow = AllowList.of(["::/0"])

    for address in ("::", "::1", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"):
        assert allow.permits(client(address)), address
    ipv4 = ("0.0.0.0", "10.0.0.1", "255.255.255.255")  # noqa: S104 - matched
    for address in ipv4:
        assert not allow.permits(client(address)), address


def test_a_slash_32_permits_only_that_address() -> None:
    """A /32 permits its address and not its neighbours."""
    allow = AllowList.of(["192.0.2.7/32"])

    assert allow.permits(client("192.0.2.7"))
    assert not allow.permits(client("192.0.2.6"))
    assert not allow.permits(client("192.0.2.8"))


def test_a_slash_128_permits_only_that_address() -> None:
    """A /128 permits its address and not its neighbours."""
    allow = AllowList.of(["2001:db8::7/128"])

    assert allow.permits(client("2001:db8::7"))
    assert not allow.permits(client("2001:db8::6"))
    assert not allow.permits(client("2001:db8::8"))


def test_an_ipv4_list_never_matches_an_ipv6_client() -> None:
    """IPv4 entries do not match IPv6 clients, even ones whose integer value would fit."""
    allow = AllowList.of(["0.0.0.0/1", "10.0.0.0/8"])

    assert not allow.permits(ip("::a00:1"))  # int value inside 10.0.0.0/8
    assert not allow.permits(ip("::1"))
    assert not allow.permits(ip("2001:db8::1"))


def test_an_ipv6_list_never_matches_an_ipv4_client() -> None:
    """IPv6 entries do not match IPv4 clients, even ::/96 whose integers cover all IPv4."""
    allow = AllowList.of(["::/96", "2001:db8::/32"])

    assert not allow.permits(ip("10.0.0.1"))
    assert not allow.permits(ip("0.0.0.1"))


def test_allow_list_of_refuses_invalid_entries() -> None:
    """AllowList.of raises AllowEntryError for an entry that would not validate."""
    with pytest.raises(AllowEntryError):
        AllowList.of(["10.0.0.1/33"])


ipv4_networks = st.builds(
    lambda address, prefix: ipaddress.IPv4Network((address, prefix), strict=False),
    st.ip_addresses(v=4),
    st.integers(0, 32),
)
ipv6_networks = st.builds(
    lambda address, prefix: ipaddress.IPv6Network((address, prefix), strict=False),
    st.ip_addresses(v=6),
    st.integers(0, 128),
).filter(lambda network: not network.subnet_of(MAPPED_RANGE))  # those become IPv4 entries


@given(networks=st.lists(ipv4_networks, min_size=1, max_size=6), address=st.ip_addresses(v=4))
def test_ipv4_matching_agrees_with_the_ipaddress_module(
    networks: list[ipaddress.IPv4Network], address: ipaddress.IPv4Address
) -> None:
    """For random IPv4 networks and addresses, permits equals ipaddress's ``in``."""
    allow = AllowList.of(str(network) for network in networks)

    assert allow.permits(address) is any(address in network for network in networks)


@given(networks=st.lists(ipv6_networks, min_size=1, max_size=6), address=st.ip_addresses(v=6))
def test_ipv6_matching_agrees_with_the_ipaddress_module(
    networks: list[ipaddress.IPv6Network], address: ipaddress.IPv6Address
) -> None:
    """For random IPv6 networks and addresses, permits equals ipaddress's ``in``."""
    allow = AllowList.of(str(network) for network in networks)

    assert allow.permits(address) is any(address in network for network in networks)


@given(networks=st.lists(ipv4_networks, min_size=1, max_size=6), data=st.data())
def test_every_address_at_a_network_edge_is_permitted(
    networks: list[ipaddress.IPv4Network], data: st.DataObject
) -> None:
    """The first and last address of every listed network are permitted."""
    allow = AllowList.of(str(network) for network in networks)
    network = data.draw(st.sampled_from(networks))

    assert allow.permits(network.network_address)
    assert allow.permits(network.broadcast_address)


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ("2001:db8:1:2::/64", "2001:db8:1:2:"),
        ("2001:db8:0:1::/64", "2001:db8:"),  # "::" may swallow the zero and what follows
        ("2001:db8:1:0::/64", "2001:db8:1:"),
        ("::/64", ""),
        ("192.0.2.1", ""),
        ("not an address", ""),
    ],
)
def test_network_text_prefix_stops_before_the_first_zero_hextet(
    network: str, expected: str
) -> None:
    assert network_text_prefix(network) == expected


@given(st.ip_addresses(v=6))
@example(ipaddress.IPv6Address("2001:db8::1:0:0:1"))
@example(ipaddress.IPv6Address("2001:db8:0:0:1::"))
def test_every_address_of_a_64_starts_with_its_network_text_prefix(
    address: ipaddress.IPv6Address,
) -> None:
    """The prefix narrows a search by the stored (canonical) text and never misses an
    address of the /64."""
    if address.ipv4_mapped is not None:
        return  # counted as the IPv4 address it carries
    network = throttle_network(str(address))
    assert str(address).startswith(network_text_prefix(network))
