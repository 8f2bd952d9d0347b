"""The five DNS checks against a fake resolver: every cell of the issue's table, for every method it names."""

from __future__ import annotations

import time
from typing import Any

import pytest

from relaywizard.diagnostics.base import Check, Context, DnsFailureKind
from relaywizard.diagnostics.dns_checks import (
    DNS_CHECKS,
    AutodiscoverCheck,
    DkimCheck,
    DmarcCheck,
    MxCheck,
    SpfCheck,
)
from relaywizard.diagnostics.model import METHODS, CheckResult, Method, Status, Target
from relaywizard.diagnostics.runner import DiagnosticsRun
from tests.diagnostics.fake_dns import SERVER, Answer, FakeResolver, failure, m365_domain

D = "contoso.com"
MS = "include:spf.protection.outlook.com"
IP = "203.0.113.10"
RELAY_METHODS: tuple[Method, ...] = ("direct-send", "connector")

KIND_WORDS: dict[DnsFailureKind, str] = {
    "timeout": "timed out",
    "servfail": "server failure",
    "refused": "refused",
    "nxdomain": "no such domain",
    "error": "DNS error",
}
FAILURE_KINDS: tuple[DnsFailureKind, ...] = ("timeout", "servfail", "refused", "error")


async def check(
    check_type: type[Check],
    records: dict[tuple[str, str], Answer],
    method: Method = "smtp-auth",
    relay_ip: str | None = None,
    progress: list[tuple[str, str]] | None = None,
) -> CheckResult:
    target = Target(domain=D, method=method, relay_ip=relay_ip)
    log = progress if progress is not None else []
    ctx = Context(target, FakeResolver(records), lambda cid, text: log.append((cid, text)))
    return await check_type().run(ctx)


def domain(**changes: Any) -> dict[tuple[str, str], Answer]:
    return m365_domain(D, **changes)


def assert_fix(result: CheckResult, *parts: str) -> None:
    assert result.fix
    for part in parts:
        assert part in result.fix, f"{part!r} not in fix {result.fix!r}"


def assert_dns_failure(result: CheckResult, kind: DnsFailureKind) -> None:
    assert result.status is Status.FAIL
    assert KIND_WORDS[kind] in result.summary
    assert SERVER in result.summary
    assert result.data["error"]["kind"] == kind


def test_ids_and_order() -> None:
    assert [c.id for c in DNS_CHECKS] == ["dns.mx", "dns.spf", "dns.dkim", "dns.dmarc", "dns.autodiscover"]
    assert all(c.group == "dns" for c in DNS_CHECKS)


# -- dns.mx ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
async def test_mx_pass_classic(method: Method) -> None:
    result = await check(MxCheck, domain(), method)
    assert result.status is Status.PASS
    assert result.data["hosts"] == ["contoso-com.mail.protection.outlook.com"]


@pytest.mark.parametrize("method", METHODS)
async def test_mx_pass_new_format(method: Method) -> None:
    result = await check(MxCheck, domain(mx=["0 contoso-com.a-v1.mx.microsoft."]), method)
    assert result.status is Status.PASS


async def test_mx_hosts_sorted_by_preference() -> None:
    mx = ["20 b.mail.protection.outlook.com.", "5 a.mail.protection.outlook.com.", "10 c.mx.microsoft."]
    result = await check(MxCheck, domain(mx=mx))
    assert result.data["hosts"] == [
        "a.mail.protection.outlook.com",
        "c.mx.microsoft",
        "b.mail.protection.outlook.com",
    ]
    assert result.data["records"][0] == {"preference": 5, "host": "a.mail.protection.outlook.com"}


async def test_mx_progress() -> None:
    log: list[tuple[str, str]] = []
    await check(MxCheck, domain(), progress=log)
    assert ("", f"Looking up MX for {D}") in log


async def test_mx_warn_smtp_auth_elsewhere() -> None:
    result = await check(MxCheck, domain(mx=["10 mx1.mailhost.example."]), "smtp-auth")
    assert result.status is Status.WARN
    assert "mx1.mailhost.example" in result.summary
    assert_fix(result, "contoso.com MX 0 contoso-com.mail.protection.outlook.com")


@pytest.mark.parametrize("method", METHODS)
async def test_mx_warn_mixed(method: Method) -> None:
    mx = ["0 contoso-com.mail.protection.outlook.com.", "10 mx1.mailhost.example."]
    result = await check(MxCheck, domain(mx=mx), method)
    assert result.status is Status.WARN
    assert result.data["microsoft_hosts"] == ["contoso-com.mail.protection.outlook.com"]
    assert_fix(result, "delete the MX records for mx1.mailhost.example")


@pytest.mark.parametrize("method", RELAY_METHODS)
async def test_mx_fail_relay_methods_without_microsoft_mx(method: Method) -> None:
    result = await check(MxCheck, domain(mx=["10 mx1.mailhost.example."]), method)
    assert result.status is Status.FAIL
    assert "no Microsoft 365 MX" in result.summary
    assert_fix(result, "contoso.com MX 0 contoso-com.mail.protection.outlook.com", "smtp.office365.com:587")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mx", [[], ["0 ."]], ids=["none", "null-mx"])
async def test_mx_fail_no_mx(method: Method, mx: list[str]) -> None:
    result = await check(MxCheck, domain(mx=mx), method)
    assert result.status is Status.FAIL
    assert result.summary == f"{D} has no MX record."
    assert result.fix.endswith("\ncontoso.com MX 0 contoso-com.mail.protection.outlook.com")


@pytest.mark.parametrize("method", METHODS)
async def test_mx_fail_nxdomain(method: Method) -> None:
    result = await check(MxCheck, {}, method)
    assert_dns_failure(result, "nxdomain")
    assert_fix(result, "spelling of contoso.com")


@pytest.mark.parametrize("kind", FAILURE_KINDS)
async def test_mx_fail_dns_errors(kind: DnsFailureKind) -> None:
    result = await check(MxCheck, {**domain(), (D, "MX"): failure(kind, D, "MX")})
    assert_dns_failure(result, kind)


# -- dns.spf -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
async def test_spf_pass(method: Method) -> None:
    result = await check(SpfCheck, domain(), method)
    assert result.status is Status.PASS
    assert result.data["record"] == f"v=spf1 {MS} -all"
    assert result.data["lookups"] == 1
    assert result.data["includes_microsoft"] is True
    assert result.data["all"] == "-all"
    assert result.data["relay_ip_covered"] is None
    if method in RELAY_METHODS:
        assert "not checked" in result.summary


async def test_spf_pass_softfail_through_nested_include() -> None:
    records = {
        **domain(spf=["v=spf1 include:_spf.contoso.com ~all"]),
        ("_spf.contoso.com", "TXT"): [f"v=spf1 {MS} ~all"],
    }
    result = await check(SpfCheck, records)
    assert result.status is Status.PASS
    assert result.data["lookups"] == 2
    assert result.data["all"] == "~all"


async def test_spf_pass_with_ten_lookups() -> None:
    terms = " ".join(f"a:h{n}.contoso.com" for n in range(9))
    result = await check(SpfCheck, domain(spf=[f"v=spf1 {terms} {MS} -all"]))
    assert result.status is Status.PASS
    assert result.data["lookups"] == 10


@pytest.mark.parametrize("method", RELAY_METHODS)
async def test_spf_pass_relay_ip_covered(method: Method) -> None:
    result = await check(SpfCheck, domain(spf=[f"v=spf1 ip4:{IP} {MS} -all"]), method, relay_ip=IP)
    assert result.status is Status.PASS
    assert result.data["relay_ip_covered"] is True
    assert IP in result.summary


async def test_spf_smtp_auth_ignores_the_relay_ip() -> None:
    result = await check(SpfCheck, domain(), "smtp-auth", relay_ip=IP)
    assert result.status is Status.PASS
    assert result.data["relay_ip"] is None


@pytest.mark.parametrize(
    ("record", "words", "fixed"),
    [
        (f"v=spf1 {MS} ?all", "?all", f"v=spf1 {MS} -all"),
        (f"v=spf1 {MS}", "no all term", f"v=spf1 {MS} -all"),
        (f"v=spf1 ptr {MS} -all", "ptr", f"v=spf1 {MS} -all"),
    ],
    ids=["neutral-all", "no-all", "ptr"],
)
@pytest.mark.parametrize("method", METHODS)
async def test_spf_warn(record: str, words: str, fixed: str, method: Method) -> None:
    relay = IP if method in RELAY_METHODS else None
    if relay:
        record = record.replace("v=spf1", f"v=spf1 ip4:{IP}")
        fixed = fixed.replace("v=spf1", f"v=spf1 ip4:{IP}")
    result = await check(SpfCheck, domain(spf=[record]), method, relay_ip=relay)
    assert result.status is Status.WARN
    assert words in result.summary
    assert result.fix == f"Change the TXT record of {D} to: {fixed}"


@pytest.mark.parametrize("method", METHODS)
async def test_spf_fail_no_record(method: Method) -> None:
    relay = IP if method in RELAY_METHODS else None
    result = await check(SpfCheck, domain(spf=[]), method, relay_ip=relay)
    assert result.status is Status.FAIL
    assert result.summary == f"{D} has no SPF record."
    expected = f"v=spf1 ip4:{IP} {MS} -all" if relay else f"v=spf1 {MS} -all"
    assert result.fix == f"Add this TXT record to {D}: {expected}"


async def test_spf_fail_two_records() -> None:
    result = await check(SpfCheck, domain(spf=[f"v=spf1 {MS} -all", "v=spf1 ip4:192.0.2.25 -all"]))
    assert result.status is Status.FAIL
    assert "2 SPF records" in result.summary
    assert result.fix == f"Replace them with this one TXT record: v=spf1 {MS} ip4:192.0.2.25 -all"
    assert result.data["records"] == [f"v=spf1 {MS} -all", "v=spf1 ip4:192.0.2.25 -all"]


async def test_spf_fail_syntax_error() -> None:
    result = await check(SpfCheck, domain(spf=[f"v=spf1 {MS} ip:192.0.2.25 -all"]))
    assert result.status is Status.FAIL
    assert "'ip:192.0.2.25'" in result.summary
    assert result.data["syntax_error"]["term"] == "ip:192.0.2.25"
    assert result.fix == f"Change the TXT record of {D} to: v=spf1 {MS} ip4:192.0.2.25 -all"


async def test_spf_fail_too_many_lookups() -> None:
    records = {
        **domain(spf=[f"v=spf1 include:_spf1.contoso.com include:_spf2.contoso.com {MS} -all"]),
        ("_spf1.contoso.com", "TXT"): [
            "v=spf1 a:r1.contoso.com a:r2.contoso.com mx include:_spf3.contoso.com -all"
        ],
        ("_spf2.contoso.com", "TXT"): ["v=spf1 a:r3.contoso.com exists:%{i}.a.contoso.com -all"],
        ("_spf3.contoso.com", "TXT"): ["v=spf1 a:r4.contoso.com a:r5.contoso.com -all"],
    }
    result = await check(SpfCheck, records)
    assert result.status is Status.FAIL
    assert "11 DNS look-ups" in result.summary
    assert result.data["lookups"] == 11
    assert_fix(result, "include:_spf1.contoso.com 7", "include:_spf2.contoso.com 3")


@pytest.mark.parametrize("method", METHODS)
async def test_spf_fail_pass_all(method: Method) -> None:
    relay = IP if method in RELAY_METHODS else None
    record = f"v=spf1 ip4:{IP} {MS} +all"
    result = await check(SpfCheck, domain(spf=[record]), method, relay_ip=relay)
    assert result.status is Status.FAIL
    assert "+all" in result.summary
    assert result.fix == f"Change the TXT record of {D} to: v=spf1 ip4:{IP} {MS} -all"


@pytest.mark.parametrize("method", METHODS)
async def test_spf_fail_include_missing(method: Method) -> None:
    result = await check(SpfCheck, domain(spf=[f"v=spf1 ip4:{IP} -all"]), method, relay_ip=IP)
    assert result.status is Status.FAIL
    assert result.summary == "SPF does not include spf.protection.outlook.com."
    assert result.fix == f"Change the TXT record of {D} to: v=spf1 ip4:{IP} {MS} -all"


@pytest.mark.parametrize("method", RELAY_METHODS)
async def test_spf_fail_relay_ip_not_covered(method: Method) -> None:
    result = await check(SpfCheck, domain(), method, relay_ip=IP)
    assert result.status is Status.FAIL
    assert f"relay IP {IP}" in result.summary
    assert result.data["relay_ip_covered"] is False
    assert result.fix == f"Change the TXT record of {D} to: v=spf1 ip4:{IP} {MS} -all"


async def test_spf_fail_lists_every_problem_and_one_record_fixes_them() -> None:
    result = await check(SpfCheck, domain(spf=["v=spf1 ptr ?all"]), "connector", relay_ip=IP)
    assert result.status is Status.FAIL
    for words in ("does not include", "relay IP", "?all", "ptr"):
        assert words in result.summary
    assert result.fix == f"Change the TXT record of {D} to: v=spf1 ip4:{IP} {MS} -all"


async def test_spf_fail_nested_dns_error() -> None:
    records = {
        **domain(spf=[f"v=spf1 include:_spf.contoso.com {MS} -all"]),
        ("_spf.contoso.com", "TXT"): failure("timeout", "_spf.contoso.com", "TXT"),
    }
    result = await check(SpfCheck, records)
    assert result.status is Status.FAIL
    assert "could not be checked completely" in result.summary
    assert "timed out" in result.summary


async def test_spf_fail_nested_include_without_record() -> None:
    result = await check(SpfCheck, domain(spf=[f"v=spf1 include:_gone.contoso.com {MS} -all"]))
    assert result.status is Status.FAIL
    assert "without an SPF record" in result.summary
    assert_fix(result, "Correct or remove include:_gone.contoso.com")


@pytest.mark.parametrize("kind", ["nxdomain", *FAILURE_KINDS])
async def test_spf_fail_dns_errors(kind: DnsFailureKind) -> None:
    result = await check(SpfCheck, {**domain(), (D, "TXT"): failure(kind, D, "TXT")})
    assert_dns_failure(result, kind)


# -- dns.dkim ----------------------------------------------------------------------------------------------


async def test_dkim_pass_classic() -> None:
    result = await check(DkimCheck, domain())
    assert result.status is Status.PASS
    assert result.data["targets"]["selector1"] == "selector1-contoso-com._domainkey.contoso.onmicrosoft.com"


async def test_dkim_pass_new_format() -> None:
    dkim = {
        s: f"{s}-contoso-com._domainkey.contoso.n-v1.dkim.mail.microsoft." for s in ("selector1", "selector2")
    }
    assert (await check(DkimCheck, domain(dkim=dkim))).status is Status.PASS


async def test_dkim_warn_both_missing() -> None:
    result = await check(DkimCheck, domain(dkim={}))
    assert result.status is Status.WARN
    assert "selector1._domainkey.contoso.com has no CNAME record" in result.summary
    assert "selector2._domainkey.contoso.com has no CNAME record" in result.summary
    assert_fix(
        result,
        "selector1._domainkey.contoso.com CNAME selector1-contoso-com._domainkey.<tenant>.onmicrosoft.com",
        "selector2._domainkey.contoso.com CNAME selector2-contoso-com._domainkey.<tenant>.onmicrosoft.com",
        "<tenant> is",
    )


async def test_dkim_warn_one_missing_derives_it_from_the_other() -> None:
    target = "selector1-contoso-com._domainkey.contoso.n-v1.dkim.mail.microsoft."
    result = await check(DkimCheck, domain(dkim={"selector1": target}))
    assert result.status is Status.WARN
    assert "selector2._domainkey.contoso.com has no CNAME record" in result.summary
    assert "selector1._domainkey" not in result.summary
    expected = "selector2-contoso-com._domainkey.contoso.n-v1.dkim.mail.microsoft"
    assert result.fix.splitlines()[1:] == [f"selector2._domainkey.contoso.com CNAME {expected}"]


async def test_dkim_warn_elsewhere() -> None:
    dkim = {s: f"{s}.contoso-com._domainkey.esp.example." for s in ("selector1", "selector2")}
    result = await check(DkimCheck, domain(dkim=dkim))
    assert result.status is Status.WARN
    assert "points to selector1.contoso-com._domainkey.esp.example, not Microsoft 365" in result.summary


async def test_dkim_fail_when_the_domain_does_not_exist() -> None:
    assert_dns_failure(await check(DkimCheck, {}), "nxdomain")


@pytest.mark.parametrize("kind", FAILURE_KINDS)
async def test_dkim_fail_dns_errors(kind: DnsFailureKind) -> None:
    name = f"selector2._domainkey.{D}"
    result = await check(DkimCheck, {**domain(), (name, "CNAME"): failure(kind, name, "CNAME")})
    assert_dns_failure(result, kind)


async def test_dkim_selectors_are_looked_up_together() -> None:
    resolver = FakeResolver(domain(), delay=0.1)
    started = time.monotonic()
    await DkimCheck().run(Context(Target(domain=D), resolver))
    assert time.monotonic() - started < 0.18
    assert resolver.max_in_flight == 2
    assert all(q.rdtype == "CNAME" for q in resolver.queries)


# -- dns.dmarc ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["quarantine", "reject", "REJECT"])
async def test_dmarc_pass(policy: str) -> None:
    result = await check(DmarcCheck, domain(dmarc=[f"v=DMARC1; p={policy}; rua=mailto:d@contoso.com"]))
    assert result.status is Status.PASS
    assert result.data["policy"] == policy.lower()
    assert result.data["tags"]["rua"] == "mailto:d@contoso.com"


async def test_dmarc_warn_missing_nxdomain() -> None:
    result = await check(DmarcCheck, domain(dmarc=[]))
    assert result.status is Status.WARN
    assert "no DMARC record" in result.summary
    assert result.fix.splitlines()[-1] == '_dmarc.contoso.com TXT "v=DMARC1; p=quarantine"'


async def test_dmarc_warn_missing_no_txt() -> None:
    records = {**domain(dmarc=[]), (f"_dmarc.{D}", "A"): ["192.0.2.1"]}
    assert (await check(DmarcCheck, records)).status is Status.WARN


async def test_dmarc_warn_none() -> None:
    result = await check(DmarcCheck, domain(dmarc=["v=DMARC1; p=none; rua=mailto:d@contoso.com"]))
    assert result.status is Status.WARN
    assert "p=none" in result.summary
    assert (
        result.fix.splitlines()[-1]
        == '_dmarc.contoso.com TXT "v=DMARC1; p=quarantine; rua=mailto:d@contoso.com"'
    )


async def test_dmarc_fail_two_records() -> None:
    result = await check(DmarcCheck, domain(dmarc=["v=DMARC1; p=reject", "v=DMARC1; p=quarantine"]))
    assert result.status is Status.FAIL
    assert "2 TXT records" in result.summary
    assert result.fix.splitlines()[-1] == '_dmarc.contoso.com TXT "v=DMARC1; p=reject"'


@pytest.mark.parametrize(
    ("record", "words", "fixed"),
    [
        ("v=DMARC; p=reject", "does not start with v=DMARC1", "v=DMARC1; p=reject"),
        ("v=dmarc1; p=reject", "does not start with v=DMARC1", "v=DMARC1; p=reject"),
        ("p=reject; v=DMARC1", "does not start with v=DMARC1", "v=DMARC1; p=reject"),
        (
            "v=DMARC1; rua=mailto:d@contoso.com",
            "no p= policy",
            "v=DMARC1; p=quarantine; rua=mailto:d@contoso.com",
        ),
        ("v=DMARC1; p=block", "p=block is not valid", "v=DMARC1; p=quarantine"),
    ],
    ids=["bad-version", "lower-case-version", "version-not-first", "no-policy", "bad-policy"],
)
async def test_dmarc_fail_invalid(record: str, words: str, fixed: str) -> None:
    result = await check(DmarcCheck, domain(dmarc=[record]))
    assert result.status is Status.FAIL
    assert words in result.summary
    assert result.fix.splitlines()[-1] == f'_dmarc.contoso.com TXT "{fixed}"'


async def test_dmarc_fail_when_the_domain_does_not_exist() -> None:
    assert_dns_failure(await check(DmarcCheck, {}), "nxdomain")


@pytest.mark.parametrize("kind", FAILURE_KINDS)
async def test_dmarc_fail_dns_errors(kind: DnsFailureKind) -> None:
    name = f"_dmarc.{D}"
    assert_dns_failure(await check(DmarcCheck, {**domain(), (name, "TXT"): failure(kind, name, "TXT")}), kind)


# -- dns.autodiscover --------------------------------------------------------------------------------------


async def test_autodiscover_pass() -> None:
    result = await check(AutodiscoverCheck, domain())
    assert result.status is Status.PASS
    assert result.data["target"] == "autodiscover.outlook.com"


async def test_autodiscover_warn_missing() -> None:
    result = await check(AutodiscoverCheck, domain(autodiscover=None))
    assert result.status is Status.WARN
    assert "no CNAME record" in result.summary
    assert result.fix.splitlines()[-1] == "autodiscover.contoso.com CNAME autodiscover.outlook.com"


async def test_autodiscover_warn_elsewhere() -> None:
    result = await check(AutodiscoverCheck, domain(autodiscover="autodiscover.mailhost.example."))
    assert result.status is Status.WARN
    assert "autodiscover.mailhost.example" in result.summary
    assert result.fix.splitlines()[-1] == "autodiscover.contoso.com CNAME autodiscover.outlook.com"


async def test_autodiscover_fail_when_the_domain_does_not_exist() -> None:
    assert_dns_failure(await check(AutodiscoverCheck, {}), "nxdomain")


@pytest.mark.parametrize("kind", FAILURE_KINDS)
async def test_autodiscover_fail_dns_errors(kind: DnsFailureKind) -> None:
    name = f"autodiscover.{D}"
    assert_dns_failure(
        await check(AutodiscoverCheck, {**domain(), (name, "CNAME"): failure(kind, name, "CNAME")}), kind
    )


# -- all five through the runner ---------------------------------------------------------------------------


async def test_all_checks_pass_for_a_correct_domain_and_run_at_once() -> None:
    delay = 0.1
    resolver = FakeResolver(domain(), delay=delay)
    run = DiagnosticsRun(Target(domain=D), [c() for c in DNS_CHECKS], resolver)
    started = time.monotonic()
    report = await run.run()
    elapsed = time.monotonic() - started
    assert [r.status for r in report.ordered()] == [Status.PASS] * 5
    assert len(resolver.queries) == 7  # MX, TXT, Microsoft's TXT, 2 DKIM, DMARC, autodiscover
    # Sequentially 7 round trips; at once, the depth of the SPF tree (2).
    assert elapsed < 3 * delay
    assert resolver.max_in_flight == 6


async def test_every_warn_and_fail_has_a_fix() -> None:
    broken = domain(
        mx=["10 mx1.mailhost.example."],
        spf=["v=spf1 ?all"],
        dkim={},
        dmarc=["v=DMARC1; p=none"],
        autodiscover=None,
    )
    report = await DiagnosticsRun(
        Target(domain=D, method="direct-send", relay_ip=IP), [c() for c in DNS_CHECKS], FakeResolver(broken)
    ).run()
    assert [r.status for r in report.ordered()] == [
        Status.FAIL,
        Status.FAIL,
        Status.WARN,
        Status.WARN,
        Status.WARN,
    ]
    assert all(r.fix for r in report.results)


async def test_spf_fail_relay_ip_that_is_not_an_address() -> None:
    result = await check(SpfCheck, domain(), "connector", relay_ip="office.contoso.com")
    assert result.status is Status.FAIL
    assert "not an IP address" in result.summary
