"""Judging this computer's addresses for the relay, and the allow-list's entries."""

from __future__ import annotations

import ipaddress

import pytest

from relaywizard.core import netinfo
from relaywizard.core.netinfo import ListenChoice, LocalAddress
from relaywizard.core.validate import InvalidValue

MACHINE = [
    LocalAddress("127.0.0.1", "lo", 8),
    LocalAddress("::1", "lo", 128),
    LocalAddress("fe80::fc:ff:fe00:1%eth0", "eth0", 64),
    LocalAddress("fd00::2", "eth0", 64),
    LocalAddress("203.0.113.7", "wan0", 29),
    LocalAddress("192.168.1.20", "eth0", 24),
    LocalAddress("10.8.0.1", "tun0", 24),
    LocalAddress("169.254.10.1", "eth1", 16),
    LocalAddress("192.168.1.20", "eth0:1", 24),
    LocalAddress("not an address", "odd", None),
]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("192.168.1.20", "lan"),
        ("10.1.2.3", "lan"),
        ("100.64.0.5", "lan"),
        ("fd00::2", "lan"),
        ("203.0.113.7", "lan"),  # a documentation range is not routed on the internet
        ("8.8.8.8", "public"),
        ("2001:4860::1", "public"),
        ("169.254.10.1", "link-local"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "any"),
        ("::", "any"),
    ],
)
def test_classify(address: str, kind: str) -> None:
    assert netinfo.classify(ipaddress.ip_address(address)) == kind


def test_office_addresses_come_first_ipv4_before_ipv6_loopback_last() -> None:
    addresses = [a.address for a in netinfo.ordered(MACHINE)]
    assert addresses == [
        "10.8.0.1",
        "192.168.1.20",
        "203.0.113.7",
        "fd00::2",
        "169.254.10.1",
        "127.0.0.1",
        "::1",
    ]


def test_ipv6_link_local_needs_a_zone_and_is_left_out() -> None:
    assert all(not a.address.startswith("fe80") for a in netinfo.ordered(MACHINE))


def test_a_zone_is_dropped_and_a_bad_prefix_forgotten() -> None:
    [address] = netinfo.ordered([LocalAddress("fd00::5%2", "eth0", 200)])
    assert (address.address, address.prefix, address.network) == ("fd00::5", None, None)


def test_listen_choices_offer_every_address_before_loopback() -> None:
    choices = netinfo.listen_choices(MACHINE)
    hosts = [c.host for c in choices]
    assert hosts[:4] == ["10.8.0.1", "192.168.1.20", "203.0.113.7", "fd00::2"]
    assert hosts[-4:] == ["0.0.0.0", "::", "127.0.0.1", "::1"]
    lan = choices[1]
    assert lan.label == "192.168.1.20 — eth0, office network 192.168.1.0/24"
    assert "devices cannot reach it" in choices[-2].label


def test_loopback_is_offered_even_when_nothing_is_reported() -> None:
    choices = netinfo.listen_choices([])
    assert [c.host for c in choices] == ["0.0.0.0", "127.0.0.1"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ListenChoice("192.168.1.20", "", "lan", ipaddress.ip_network("192.168.1.0/24")), "192.168.1.0/24"),
        (ListenChoice("10.1.2.3", "", "lan", ipaddress.ip_network("10.0.0.0/8")), None),  # too wide
        (ListenChoice("fd00::2", "", "lan", ipaddress.ip_network("fd00::/64")), "fd00::/64"),
        (ListenChoice("127.0.0.1", "", "loopback"), "127.0.0.1/32"),
        (ListenChoice("::1", "", "loopback"), "::1/128"),
        (ListenChoice("0.0.0.0", "", "any"), None),
        (ListenChoice("8.8.8.8", "", "public", ipaddress.ip_network("8.8.8.0/24")), None),
        (ListenChoice("192.168.1.20", "", "lan"), None),  # prefix unknown
    ],
)
def test_suggested_network(choice: ListenChoice, expected: str | None) -> None:
    assert netinfo.suggested_network(choice) == expected


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("192.168.1.50", "192.168.1.50/32"),
        (" 192.168.1.0/24 ", "192.168.1.0/24"),
        ("fd00::2", "fd00::2/128"),
        ("[fd00::2]", "fd00::2/128"),
        ("10.0.0.0/8", "10.0.0.0/8"),
    ],
)
def test_device_network_accepts_an_address_or_a_network(text: str, entry: str) -> None:
    assert netinfo.device_network(text) == entry


@pytest.mark.parametrize(
    ("text", "words", "suggestion"),
    [
        ("192.168.1.5/24", "one address inside 192.168.1.0/24", "192.168.1.0/24"),
        ("scanner.local", "is not an IP address or a network", None),
        ("192.168.1.50:25", "it includes a port", "192.168.1.50"),
        ("", "The value is empty", None),
    ],
)
def test_device_network_says_what_is_wrong(text: str, words: str, suggestion: str | None) -> None:
    with pytest.raises(InvalidValue) as caught:
        netinfo.device_network(text)
    assert words in str(caught.value)
    assert caught.value.suggestion == suggestion
