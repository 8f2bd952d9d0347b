"""``DnsResolver`` against the lab's unbound: answers as text, and each failure with its kind and server.

``parse_dns_server`` and the TXT joining need no servers and run everywhere; the rest is marked ``lab``.
"""

from __future__ import annotations

import socket
import time

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from relaywizard.core.validate import InvalidValue
from relaywizard.diagnostics.base import DnsFailureKind, DnsLookupError
from relaywizard.diagnostics.dns_resolver import DnsResolver, _text, parse_dns_server
from tests.lab import zones
from tests.lab.lab import Lab

lab_only = pytest.mark.lab

# -- parse_dns_server --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.53", ("192.0.2.53", 53)),
        (" 192.0.2.53:5353 ", ("192.0.2.53", 5353)),
        ("2001:db8::53", ("2001:db8::53", 53)),
        ("[2001:db8::53]:5353", ("2001:db8::53", 5353)),
        ("[2001:DB8::53]", ("2001:db8::53", 53)),
    ],
)
def test_parse_dns_server(text: str, expected: tuple[str, int]) -> None:
    assert parse_dns_server(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("dns.google", "give its IP address"),
        ("dns.google:53", "give its IP address"),
        ("192.0.2.53:0", "is not a port from 1 to 65535"),
        ("192.0.2.53:99999", "is not a port from 1 to 65535"),
        ("192.0.2.53:abc", "is not a port"),
        ("[192.0.2.53]:53", "only an IPv6 address goes between brackets"),
        ("[2001:db8::53", "brackets"),
        ("", "is not a DNS server"),
    ],
)
def test_parse_dns_server_rejects(text: str, words: str) -> None:
    with pytest.raises(ValueError, match="is not a DNS server") as caught:
        parse_dns_server(text)
    assert isinstance(caught.value, InvalidValue)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_txt_strings_of_one_record_are_joined_unquoted() -> None:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, '"v=spf1 ip4:192.0.2.1 " "-all"')
    assert _text(rdata) == "v=spf1 ip4:192.0.2.1 -all"
    mx = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.MX, "10 mx.contoso.com.")
    assert _text(mx) == "10 mx.contoso.com."


def test_describe() -> None:
    assert DnsResolver([("192.0.2.53", 53), ("2001:db8::53", 5353)]).describe() == (
        "192.0.2.53:53, [2001:db8::53]:5353"
    )
    assert DnsResolver().describe().startswith("the system resolver (")


# -- against the lab -------------------------------------------------------------------------------------


@pytest.fixture
def resolver(lab: Lab) -> DnsResolver:
    return DnsResolver([(lab.host, lab.dns_port)], timeout=2)


def server(lab: Lab) -> str:
    return f"{lab.host}:{lab.dns_port}"


@lab_only
async def test_answers_as_text(resolver: DnsResolver) -> None:
    d = zones.GOOD
    assert await resolver.query(d, "MX") == [f"0 {zones.m365_mx(d)}"]
    txt = await resolver.query(d, "TXT")
    assert sorted(txt) == sorted([zones.verification_txt(d), f"v=spf1 {zones.MICROSOFT_INCLUDE} -all"])
    assert await resolver.query(f"selector1._domainkey.{d}", "CNAME") == [zones.dkim_target(d, "selector1")]
    assert await resolver.query(f"autodiscover.{d}.", "CNAME") == [zones.AUTODISCOVER_TARGET]
    assert await resolver.query("ns.lab.test", "A") == [zones.LOOPBACK]


@lab_only
async def test_no_records_of_that_type_is_empty(resolver: DnsResolver) -> None:
    assert await resolver.query(zones.MX_MISSING, "MX") == []
    assert await resolver.query(zones.GOOD, "AAAA") == []


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        (zones.NXDOMAIN, "nxdomain"),
        (f"_dmarc.{zones.DMARC_MISSING}", "nxdomain"),
        (zones.SERVFAIL, "servfail"),
        (zones.REFUSED, "refused"),
        (zones.OUTSIDE, "refused"),
    ],
)
@lab_only
async def test_failures_name_their_kind_and_server(
    lab: Lab, resolver: DnsResolver, name: str, kind: DnsFailureKind
) -> None:
    started = time.monotonic()
    with pytest.raises(DnsLookupError) as caught:
        await resolver.query(name, "TXT")
    assert time.monotonic() - started < 0.5  # an answer, not a wait
    assert caught.value.kind == kind
    assert caught.value.server == server(lab)
    assert caught.value.name == name
    assert server(lab) in caught.value.describe()


@lab_only
async def test_timeout_is_bounded_by_the_lifetime(lab: Lab) -> None:
    resolver = DnsResolver([(lab.host, lab.dns_port)], timeout=1)
    started = time.monotonic()
    with pytest.raises(DnsLookupError) as caught:
        await resolver.query(zones.TIMEOUT, "MX")
    elapsed = time.monotonic() - started
    assert caught.value.kind == "timeout"
    assert caught.value.server == server(lab)
    assert "timed out" in caught.value.describe()
    assert 0.9 < elapsed < 1.5


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@lab_only
async def test_a_dead_first_server_falls_through_to_the_next(lab: Lab) -> None:
    resolver = DnsResolver([("127.0.0.1", _closed_udp_port()), (lab.host, lab.dns_port)], timeout=2)
    assert await resolver.query(zones.GOOD, "MX") == [f"0 {zones.m365_mx(zones.GOOD)}"]
