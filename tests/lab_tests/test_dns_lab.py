"""The DNS half of the lab: unbound answers every test zone exactly as later diagnostics rely on.

Queried with dnspython the way relaywizard queries DNS. unbound is authoritative only: a CNAME pointing
outside the lab's zones comes back alone, so DKIM selectors and autodiscover are queried as type CNAME.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.resolver
import dns.zone
import pytest

from tests.lab import ports, zones
from tests.lab.process import free_port
from tests.lab.unbound import DnsLab

pytestmark = pytest.mark.lab

#: Lifetime of an ordinary query (seconds).
LIFETIME = 2.0
#: Lifetime of a query for the timeout name: it must fail by then.
TIMEOUT_LIFETIME = 1.0
#: A refusal or error answer must come back at least this fast (seconds): no waiting on anything upstream.
QUICK = 0.5


def make_resolver(lab: DnsLab, lifetime: float = LIFETIME) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [lab.host]
    resolver.port = lab.port
    resolver.timeout = lifetime
    resolver.lifetime = lifetime
    return resolver


@pytest.fixture
def resolver(dns_lab: DnsLab) -> dns.resolver.Resolver:
    return make_resolver(dns_lab)


def values(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> list[str]:
    """The answer's records as text (TXT strings joined), sorted; raises what dnspython raises."""
    answer = resolver.resolve(name.rstrip(".") + ".", rdtype, search=False)
    texts = []
    for rdata in answer:
        if rdtype == "TXT":
            texts.append(b"".join(rdata.strings).decode())
        else:
            texts.append(rdata.to_text())
    return sorted(texts)


def lookup(resolver: dns.resolver.Resolver, domain: str, kind: str) -> list[str]:
    """One kind of Microsoft 365 record of ``domain``: mx, spf, dkim1, dkim2, dmarc or autodiscover."""
    if kind == "mx":
        return values(resolver, domain, "MX")
    if kind == "spf":
        return [text for text in values(resolver, domain, "TXT") if text.lower().startswith("v=spf1")]
    if kind in ("dkim1", "dkim2"):
        return values(resolver, f"selector{kind[-1]}._domainkey.{domain}", "CNAME")
    if kind == "dmarc":
        return values(resolver, f"_dmarc.{domain}", "TXT")
    if kind == "autodiscover":
        return values(resolver, f"autodiscover.{domain}", "CNAME")
    raise ValueError(kind)


KINDS = ("mx", "spf", "dkim1", "dkim2", "dmarc", "autodiscover")
ASPECT = {
    "mx": "mx",
    "spf": "spf",
    "dkim1": "dkim",
    "dkim2": "dkim",
    "dmarc": "dmarc",
    "autodiscover": "autodiscover",
}


def correct(domain: str, kind: str) -> list[str]:
    """What a correctly set-up, classic-format domain of tenant contoso has (spelled out, not generated)."""
    dashed = domain.replace(".", "-")
    return {
        "mx": [f"0 {dashed}.mail.protection.outlook.com."],
        "spf": ["v=spf1 include:spf.protection.outlook.com -all"],
        "dkim1": [f"selector1-{dashed}._domainkey.contoso.onmicrosoft.com."],
        "dkim2": [f"selector2-{dashed}._domainkey.contoso.onmicrosoft.com."],
        "dmarc": ["v=DMARC1; p=reject"],
        "autodiscover": ["autodiscover.outlook.com."],
    }[kind]


def rcodes(error: dns.resolver.NoNameservers) -> list[str]:
    return [str(entry[3]) for entry in error.kwargs["errors"]]


# -- the zone data itself ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(zones.ZONES))
def test_zone_file_parses_with_soa_and_ns(name: str) -> None:
    zone = dns.zone.from_text(zones.ZONES[name], origin=name + ".", relativize=False)
    assert zone.get_rdataset(name + ".", "SOA") is not None
    assert zone.get_rdataset(name + ".", "NS") is not None


def test_every_domain_constant_is_served() -> None:
    served = set(zones.ZONES) | set(zones.LOCAL_ZONES) | set(zones.UNAVAILABLE_ZONES)
    wanted = {
        *zones.CORRECT,
        *zones.BROKEN,
        zones.LAB,
        zones.EXTERNAL,
        zones.SPF_STANDIN,
        zones.TIMEOUT,
        zones.NXDOMAIN,
        zones.SERVFAIL,
        zones.REFUSED,
    }
    assert wanted == served
    assert zones.OUTSIDE not in served
    assert all(d.endswith(".test") for d in served - {zones.SPF_STANDIN})


# -- the server -------------------------------------------------------------------------------------


def test_unbound_runs_from_its_own_folder(dns_lab: DnsLab) -> None:
    pid = dns_lab.pid()
    assert pid is not None
    assert dns_lab.running()
    assert dns_lab.pid_file.parent == dns_lab.root
    assert Path(os.readlink(f"/proc/{pid}/exe")).name == "unbound"
    assert str(dns_lab.conf).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert dns_lab.host == ports.HOST


def test_answers_over_tcp_too(dns_lab: DnsLab) -> None:
    reply = dns.query.tcp(
        dns.message.make_query(f"{zones.GOOD}.", "TXT"), dns_lab.host, port=dns_lab.port, timeout=LIFETIME
    )
    assert reply.rcode() == dns.rcode.NOERROR
    assert "v=spf1 include:spf.protection.outlook.com -all" in reply.to_text()


# -- correctly set-up domains -----------------------------------------------------------------------

GOOD_NEW = zones.GOOD_NEW

CORRECT_RECORDS = [
    (zones.GOOD, "mx", ["0 contoso-test.mail.protection.outlook.com."]),
    (zones.GOOD, "spf", ["v=spf1 include:spf.protection.outlook.com -all"]),
    (zones.GOOD, "dkim1", ["selector1-contoso-test._domainkey.contoso.onmicrosoft.com."]),
    (zones.GOOD, "dkim2", ["selector2-contoso-test._domainkey.contoso.onmicrosoft.com."]),
    (zones.GOOD, "dmarc", ["v=DMARC1; p=reject"]),
    (zones.GOOD, "autodiscover", ["autodiscover.outlook.com."]),
    (GOOD_NEW, "mx", ["0 fabrikam-test.a-v1.mx.microsoft."]),
    (GOOD_NEW, "spf", ["v=spf1 include:_spf.fabrikam.test ~all"]),
    (f"_spf.{GOOD_NEW}", "spf", ["v=spf1 include:spf.protection.outlook.com ~all"]),
    (GOOD_NEW, "dkim1", ["selector1-fabrikam-test._domainkey.fabrikam.n-v1.dkim.mail.microsoft."]),
    (GOOD_NEW, "dkim2", ["selector2-fabrikam-test._domainkey.fabrikam.n-v1.dkim.mail.microsoft."]),
    (GOOD_NEW, "dmarc", ["v=DMARC1; p=quarantine"]),
    (GOOD_NEW, "autodiscover", ["autodiscover.outlook.com."]),
]


@pytest.mark.parametrize(
    ("domain", "kind", "expected"), CORRECT_RECORDS, ids=[f"{d}-{k}" for d, k, _ in CORRECT_RECORDS]
)
def test_correct_domain(resolver: dns.resolver.Resolver, domain: str, kind: str, expected: list[str]) -> None:
    assert lookup(resolver, domain, kind) == expected


@pytest.mark.parametrize("domain", [*zones.CORRECT, *zones.BROKEN])
def test_microsoft_domains_carry_the_verification_txt(resolver: dns.resolver.Resolver, domain: str) -> None:
    assert [t for t in values(resolver, domain, "TXT") if t.startswith("MS=ms")] == [
        zones.verification_txt(domain)
    ]


# -- broken domains: the broken record ---------------------------------------------------------------

ErrorType = type[dns.exception.DNSException]

BROKEN_RECORDS: list[tuple[str, str, list[str] | ErrorType]] = [
    (zones.SPF_MISSING, "spf", []),
    (
        zones.SPF_DOUBLE,
        "spf",
        ["v=spf1 include:spf.protection.outlook.com -all", "v=spf1 ip4:192.0.2.25 -all"],
    ),
    (zones.SPF_NEUTRAL_ALL, "spf", ["v=spf1 include:spf.protection.outlook.com ?all"]),
    (zones.SPF_NO_ALL, "spf", ["v=spf1 include:spf.protection.outlook.com"]),
    (zones.SPF_PTR, "spf", ["v=spf1 ptr include:spf.protection.outlook.com -all"]),
    (zones.SPF_PASS_ALL, "spf", ["v=spf1 include:spf.protection.outlook.com +all"]),
    (zones.SPF_NO_MICROSOFT, "spf", ["v=spf1 ip4:192.0.2.25 -all"]),
    (zones.SPF_SYNTAX_ERROR, "spf", ["v=spf1 include:spf.protection.outlook.com ip:192.0.2.25 -all"]),
    (
        zones.SPF_TOO_MANY_LOOKUPS,
        "spf",
        [
            "v=spf1 include:_spf1.spf-toomany.test "
            "include:_spf2.spf-toomany.test "
            "include:spf.protection.outlook.com -all"
        ],
    ),
    (zones.SPF_RELAY_IP, "spf", ["v=spf1 ip4:203.0.113.10 include:spf.protection.outlook.com -all"]),
    (zones.DMARC_NONE, "dmarc", ["v=DMARC1; p=none; rua=mailto:dmarc@dmarc-none.test"]),
    (zones.DMARC_MISSING, "dmarc", dns.resolver.NXDOMAIN),
    (zones.DMARC_DOUBLE, "dmarc", ["v=DMARC1; p=quarantine", "v=DMARC1; p=reject"]),
    (zones.DMARC_BAD_VERSION, "dmarc", ["v=DMARC; p=reject"]),
    (zones.DMARC_NO_POLICY, "dmarc", ["v=DMARC1; rua=mailto:dmarc@dmarc-nopolicy.test"]),
    (zones.DMARC_BAD_POLICY, "dmarc", ["v=DMARC1; p=block"]),
    (zones.MX_ELSEWHERE, "mx", ["10 mx1.mailhost.example."]),
    (zones.MX_MIXED, "mx", ["0 mx-mixed-test.mail.protection.outlook.com.", "10 mx1.mailhost.example."]),
    (zones.MX_MISSING, "mx", dns.resolver.NoAnswer),
    (zones.DKIM_MISSING, "dkim1", dns.resolver.NXDOMAIN),
    (zones.DKIM_MISSING, "dkim2", dns.resolver.NXDOMAIN),
    (
        zones.DKIM_SELECTOR1_ONLY,
        "dkim1",
        ["selector1-dkim-selector1only-test._domainkey.contoso.onmicrosoft.com."],
    ),
    (zones.DKIM_SELECTOR1_ONLY, "dkim2", dns.resolver.NXDOMAIN),
    (zones.DKIM_ELSEWHERE, "dkim1", ["selector1.dkim-elsewhere-test._domainkey.esp.example."]),
    (zones.DKIM_ELSEWHERE, "dkim2", ["selector2.dkim-elsewhere-test._domainkey.esp.example."]),
    (zones.AUTODISCOVER_MISSING, "autodiscover", dns.resolver.NXDOMAIN),
    (zones.AUTODISCOVER_ELSEWHERE, "autodiscover", ["autodiscover.mailhost.example."]),
]


def test_every_broken_domain_has_an_expectation() -> None:
    assert {domain for domain, _, _ in BROKEN_RECORDS} == set(zones.BROKEN)
    assert all(ASPECT[kind] == zones.BROKEN[domain] for domain, kind, _ in BROKEN_RECORDS)


@pytest.mark.parametrize(
    ("domain", "kind", "expected"), BROKEN_RECORDS, ids=[f"{d}-{k}" for d, k, _ in BROKEN_RECORDS]
)
def test_broken_record(
    resolver: dns.resolver.Resolver, domain: str, kind: str, expected: list[str] | ErrorType
) -> None:
    if isinstance(expected, list):
        assert lookup(resolver, domain, kind) == sorted(expected)
    else:
        started = time.monotonic()
        with pytest.raises(expected):
            lookup(resolver, domain, kind)
        assert time.monotonic() - started < QUICK


@pytest.mark.parametrize("domain", [zones.GOOD, *zones.BROKEN])
def test_everything_else_of_a_broken_domain_is_correct(resolver: dns.resolver.Resolver, domain: str) -> None:
    broken = zones.BROKEN.get(domain)
    for kind in KINDS:
        if ASPECT[kind] != broken:
            assert lookup(resolver, domain, kind) == correct(domain, kind), kind


def test_mx_missing_domain_still_exists(resolver: dns.resolver.Resolver) -> None:
    assert values(resolver, zones.MX_MISSING, "SOA")
    assert lookup(resolver, zones.MX_MISSING, "spf") == correct(zones.MX_MISSING, "spf")


# -- SPF resolved recursively, offline --------------------------------------------------------------

LOOKUP_TERMS = {"include", "a", "mx", "ptr", "exists", "redirect"}


def count_lookups(resolver: dns.resolver.Resolver, domain: str, *, recursive: bool = True) -> int:
    """DNS-querying SPF terms of ``domain``, following include and redirect through the lab's DNS."""
    (record,) = lookup(resolver, domain, "spf")
    total = 0
    for term in record.split()[1:]:
        mechanism = term.lstrip("+-~?").lower()
        name = re.split(r"[:=/]", mechanism, maxsplit=1)[0]
        if name in LOOKUP_TERMS:
            total += 1
            if recursive and name in ("include", "redirect"):
                total += count_lookups(resolver, re.split(r"[:=]", mechanism, maxsplit=1)[1])
    return total


@pytest.mark.parametrize(
    ("domain", "top_level", "recursive"),
    [
        (zones.GOOD, 1, 1),
        (zones.GOOD_NEW, 1, 2),
        (zones.SPF_RELAY_IP, 1, 1),
        (zones.LAB, 1, 1),
        (zones.SPF_TOO_MANY_LOOKUPS, 3, 11),
    ],
)
def test_spf_lookup_count(
    resolver: dns.resolver.Resolver, domain: str, top_level: int, recursive: int
) -> None:
    assert count_lookups(resolver, domain, recursive=False) == top_level
    assert count_lookups(resolver, domain) == recursive


def test_spf_too_many_lookups_targets_resolve(resolver: dns.resolver.Resolver) -> None:
    d = zones.SPF_TOO_MANY_LOOKUPS
    for n in range(1, 6):
        assert values(resolver, f"relay{n}.{d}", "A") == [f"192.0.2.{n}"]
    assert values(resolver, f"mail.{d}", "MX") == [f"10 relay1.{d}."]
    with pytest.raises(dns.resolver.NXDOMAIN):  # the exists: term's target, for any client IP
        values(resolver, f"192.0.2.99.allow.{d}", "A")


def test_spf_standin_is_served(resolver: dns.resolver.Resolver) -> None:
    assert values(resolver, "spf.protection.outlook.com", "TXT") == [
        "v=spf1 ip4:40.92.0.0/15 ip4:40.107.0.0/16 ip4:52.100.0.0/15 ip4:52.102.0.0/16 "
        "ip4:104.47.0.0/17 ip6:2a01:111:f400::/48 -all"
    ]


# -- the lab's own domains --------------------------------------------------------------------------

LAB_RECORDS = [
    ("lab.test", "MX", ["10 mx.lab.test."]),
    ("mx.lab.test", "A", ["127.0.0.1"]),
    ("smtp.lab.test", "A", ["127.0.0.1"]),
    ("ns.lab.test", "A", ["127.0.0.1"]),
    ("lab.test", "TXT", ["v=spf1 ip4:127.0.0.2 include:spf.protection.outlook.com -all"]),
    ("_dmarc.lab.test", "TXT", ["v=DMARC1; p=reject"]),
    ("external.test", "A", ["127.0.0.1"]),
    ("external.test", "MX", ["10 mx.external.test."]),
    ("mx.external.test", "A", ["127.0.0.1"]),
]


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"), LAB_RECORDS, ids=[f"{n}-{t}" for n, t, _ in LAB_RECORDS]
)
def test_lab_domains(resolver: dns.resolver.Resolver, name: str, rdtype: str, expected: list[str]) -> None:
    assert values(resolver, name, rdtype) == expected


# -- failure names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [zones.TIMEOUT, f"mail.{zones.TIMEOUT}"])
def test_timeout_name_times_out_within_the_lifetime(dns_lab: DnsLab, name: str) -> None:
    resolver = make_resolver(dns_lab, TIMEOUT_LIFETIME)
    started = time.monotonic()
    with pytest.raises(dns.resolver.LifetimeTimeout):
        resolver.resolve(name + ".", "A", search=False)
    assert time.monotonic() - started < TIMEOUT_LIFETIME + 0.5


@pytest.mark.parametrize("name", [zones.NXDOMAIN, f"mail.{zones.NXDOMAIN}"])
def test_nxdomain_name(resolver: dns.resolver.Resolver, name: str) -> None:
    started = time.monotonic()
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve(name + ".", "MX", search=False)
    assert time.monotonic() - started < QUICK


@pytest.mark.parametrize(
    ("name", "rcode"),
    [
        (zones.SERVFAIL, "SERVFAIL"),
        (f"_dmarc.{zones.SERVFAIL}", "SERVFAIL"),
        (zones.REFUSED, "REFUSED"),
        (f"mail.{zones.REFUSED}", "REFUSED"),
    ],
)
def test_servfail_and_refused_names_fail_at_once(
    resolver: dns.resolver.Resolver, name: str, rcode: str
) -> None:
    started = time.monotonic()
    with pytest.raises(dns.resolver.NoNameservers) as caught:
        resolver.resolve(name + ".", "TXT", search=False)
    assert time.monotonic() - started < QUICK
    assert rcodes(caught.value) == [rcode]


OUTSIDE_NAMES = [
    zones.OUTSIDE,
    "www.microsoft.com",
    "outlook.com",  # only spf.protection.outlook.com is a lab zone, not its parents or siblings
    "protection.outlook.com",
    "autodiscover.outlook.com",
    "contoso-test.mail.protection.outlook.com",
    "mx1.mailhost.example",
    "nosuch.test",  # under .test but not a lab zone
    "test",
]


@pytest.mark.parametrize("name", OUTSIDE_NAMES)
def test_names_outside_the_zones_are_refused_at_once(resolver: dns.resolver.Resolver, name: str) -> None:
    started = time.monotonic()
    with pytest.raises(dns.resolver.NoNameservers) as caught:
        resolver.resolve(name + ".", "A", search=False)
    assert time.monotonic() - started < QUICK
    assert rcodes(caught.value) == ["REFUSED"]


def test_no_query_ever_left_the_server(dns_lab: DnsLab, resolver: dns.resolver.Resolver) -> None:
    """unbound's own counters: nothing ever reached its iterator (a cache miss is what would recurse)."""
    for name in OUTSIDE_NAMES:
        with pytest.raises(dns.resolver.NoNameservers):
            resolver.resolve(name + ".", "MX", search=False)
    lookup(resolver, zones.GOOD, "autodiscover")
    stats = dns_lab.stats()
    assert int(stats["total.num.queries"]) > len(OUTSIDE_NAMES)
    assert stats["total.num.cachemiss"] == "0"
    assert stats["total.num.recursivereplies"] == "0"
    assert stats["total.requestlist.max"] == "0"


# -- start and stop ----------------------------------------------------------------------------------


def test_start_stop_and_restart(tmp_path: Path) -> None:
    lab = DnsLab(tmp_path, ports.HOST, free_port(ports.HOST))
    lab.write_config()
    try:
        for _ in range(2):
            lab.start()
            pid = lab.pid()
            assert pid is not None
            assert lab.running()
            lab.stop()
            assert lab.pid() is None
            assert not lab.running()
            assert not lab.pid_file.exists()
            try:
                state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
            except OSError:
                state = "gone"
            assert state in ("gone", "Z")
    finally:
        lab.stop()


def test_bad_zone_file_is_reported_before_starting(tmp_path: Path) -> None:
    lab = DnsLab(tmp_path, ports.HOST, free_port(ports.HOST))
    lab.write_config()
    (lab.zone_dir / f"{zones.GOOD}.zone").write_text("$ORIGIN contoso.test.\n@ MX not-a-number\n")
    try:
        with pytest.raises(RuntimeError, match=r"unbound-checkconf(.|\n)*contoso\.test"):
            lab.start()
        assert lab.pid() is None
    finally:
        lab.stop()


def test_port_in_use_is_reported_with_the_log(tmp_path: Path, dns_lab: DnsLab) -> None:
    second = DnsLab(tmp_path, dns_lab.host, dns_lab.port)
    second.write_config()
    try:
        with pytest.raises(RuntimeError, match=r"(?i)address already in use"):
            second.start(timeout=5)
        assert second.pid() is None
    finally:
        second.stop()
    assert dns_lab.running()
