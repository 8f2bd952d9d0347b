"""The five DNS checks against the lab's unbound: every zone gives its intended status, failures are named
and bounded in time, and the look-ups really run at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from relaywizard.diagnostics.base import DnsFailureKind
from relaywizard.diagnostics.dns_checks import DNS_CHECKS
from relaywizard.diagnostics.dns_resolver import DnsResolver
from relaywizard.diagnostics.model import METHODS, Method, Report, Status, Target
from relaywizard.diagnostics.runner import DiagnosticsRun
from tests.lab import zones
from tests.lab.lab import Lab

pytestmark = pytest.mark.lab

#: Broken domain → (the check it breaks, its status for SMTP AUTH). Every other check must pass.
EXPECTED: dict[str, tuple[str, Status]] = {
    zones.SPF_MISSING: ("dns.spf", Status.FAIL),
    zones.SPF_DOUBLE: ("dns.spf", Status.FAIL),
    zones.SPF_NEUTRAL_ALL: ("dns.spf", Status.WARN),
    zones.SPF_NO_ALL: ("dns.spf", Status.WARN),
    zones.SPF_PTR: ("dns.spf", Status.WARN),
    zones.SPF_PASS_ALL: ("dns.spf", Status.FAIL),
    zones.SPF_NO_MICROSOFT: ("dns.spf", Status.FAIL),
    zones.SPF_SYNTAX_ERROR: ("dns.spf", Status.FAIL),
    zones.SPF_TOO_MANY_LOOKUPS: ("dns.spf", Status.FAIL),
    zones.SPF_RELAY_IP: ("dns.spf", Status.PASS),
    zones.DMARC_NONE: ("dns.dmarc", Status.WARN),
    zones.DMARC_MISSING: ("dns.dmarc", Status.WARN),
    zones.DMARC_DOUBLE: ("dns.dmarc", Status.FAIL),
    zones.DMARC_BAD_VERSION: ("dns.dmarc", Status.FAIL),
    zones.DMARC_NO_POLICY: ("dns.dmarc", Status.FAIL),
    zones.DMARC_BAD_POLICY: ("dns.dmarc", Status.FAIL),
    zones.MX_ELSEWHERE: ("dns.mx", Status.WARN),
    zones.MX_MIXED: ("dns.mx", Status.WARN),
    zones.MX_MISSING: ("dns.mx", Status.FAIL),
    zones.DKIM_MISSING: ("dns.dkim", Status.WARN),
    zones.DKIM_SELECTOR1_ONLY: ("dns.dkim", Status.WARN),
    zones.DKIM_ELSEWHERE: ("dns.dkim", Status.WARN),
    zones.AUTODISCOVER_MISSING: ("dns.autodiscover", Status.WARN),
    zones.AUTODISCOVER_ELSEWHERE: ("dns.autodiscover", Status.WARN),
}

FAILING: dict[str, DnsFailureKind] = {
    zones.TIMEOUT: "timeout",
    zones.NXDOMAIN: "nxdomain",
    zones.SERVFAIL: "servfail",
    zones.REFUSED: "refused",
}
KIND_WORDS: dict[DnsFailureKind, str] = {
    "timeout": "timed out",
    "nxdomain": "no such domain",
    "servfail": "server failure",
    "refused": "refused",
    "error": "DNS error",
}


def test_every_broken_zone_is_covered() -> None:
    assert set(EXPECTED) == set(zones.BROKEN)
    assert all(check_id == f"dns.{zones.BROKEN[d]}" for d, (check_id, _) in EXPECTED.items())


async def run_checks(
    lab: Lab,
    domain: str,
    method: Method = "smtp-auth",
    relay_ip: str | None = None,
    limit: float = 2,
) -> Report:
    target = Target(domain=domain, method=method, relay_ip=relay_ip, timeout=limit)
    resolver = DnsResolver([(lab.host, lab.dns_port)], timeout=limit)
    return await DiagnosticsRun(target, [c() for c in DNS_CHECKS], resolver).run()


def statuses(report: Report) -> dict[str, Status]:
    return {r.id: r.status for r in report.results}


@pytest.mark.parametrize("domain", zones.CORRECT)
@pytest.mark.parametrize("method", METHODS)
async def test_correct_domains_pass(lab: Lab, domain: str, method: Method) -> None:
    report = await run_checks(lab, domain, method)
    assert statuses(report) == {c.id: Status.PASS for c in DNS_CHECKS}, report.to_json()


@pytest.mark.parametrize("domain", list(EXPECTED))
async def test_broken_zone_breaks_exactly_its_check(lab: Lab, domain: str) -> None:
    check_id, status = EXPECTED[domain]
    report = await run_checks(lab, domain)
    expected = {c.id: Status.PASS for c in DNS_CHECKS} | {check_id: status}
    assert statuses(report) == expected, report.to_json()
    result = report.result(check_id)
    assert result is not None
    if status is not Status.PASS:
        assert result.fix


@pytest.mark.parametrize("method", ["direct-send", "connector"])
async def test_mx_elsewhere_fails_relay_methods(lab: Lab, method: Method) -> None:
    report = await run_checks(lab, zones.MX_ELSEWHERE, method)
    assert statuses(report)["dns.mx"] is Status.FAIL


@pytest.mark.parametrize("method", ["direct-send", "connector"])
async def test_relay_ip_in_spf(lab: Lab, method: Method) -> None:
    covered = await run_checks(lab, zones.SPF_RELAY_IP, method, relay_ip=zones.RELAY_IP)
    missing = await run_checks(lab, zones.GOOD, method, relay_ip=zones.RELAY_IP)
    assert statuses(covered)["dns.spf"] is Status.PASS
    result = missing.result("dns.spf")
    assert result is not None
    assert result.status is Status.FAIL
    assert result.data["relay_ip_covered"] is False
    assert result.fix.endswith(f"v=spf1 ip4:{zones.RELAY_IP} {zones.MICROSOFT_INCLUDE} -all")


async def test_relay_ip_found_through_a_and_mx_terms_of_nested_includes(lab: Lab) -> None:
    # _spf2 has a:relay3 (192.0.2.3); _spf1 has mx:mail (→ relay1, 192.0.2.1).
    for ip in ("192.0.2.3", "192.0.2.1"):
        report = await run_checks(lab, zones.SPF_TOO_MANY_LOOKUPS, "direct-send", relay_ip=ip)
        result = report.result("dns.spf")
        assert result is not None
        assert result.data["relay_ip_covered"] is True, ip
        assert result.data["lookups"] == 11


async def test_spf_details_of_the_nested_zones(lab: Lab) -> None:
    new = (await run_checks(lab, zones.GOOD_NEW)).result("dns.spf")
    syntax = (await run_checks(lab, zones.SPF_SYNTAX_ERROR)).result("dns.spf")
    assert new is not None
    assert syntax is not None
    assert new.data["includes_microsoft"] is True
    assert new.data["all"] == "~all"
    assert new.data["lookups"] == 2
    assert "'ip:192.0.2.25'" in syntax.summary


@pytest.mark.parametrize("domain", list(FAILING))
async def test_failing_names_fail_with_their_kind_and_server(lab: Lab, domain: str) -> None:
    kind = FAILING[domain]
    timeout = 1.0
    started = time.monotonic()
    report = await run_checks(lab, domain, limit=timeout)
    elapsed = time.monotonic() - started
    for check in DNS_CHECKS:
        result = report.result(check.id)
        assert result is not None
        assert result.status is Status.FAIL, result
        assert KIND_WORDS[kind] in result.summary, result.summary
        assert f"{lab.host}:{lab.dns_port}" in result.summary
        assert result.fix
        assert result.duration_ms / 1000 <= check.steps * timeout + 1
    # All five ran at once, each failing after one timed-out look-up at most.
    assert elapsed < timeout + 1


class DelayedResolver:
    """The lab's resolver with a fixed round trip added, so concurrency shows on loopback."""

    def __init__(self, inner: DnsResolver, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.count = 0

    def describe(self) -> str:
        return self.inner.describe()

    async def query(self, name: str, rdtype: str) -> list[str]:
        self.count += 1
        await asyncio.sleep(self.delay)
        return await self.inner.query(name, rdtype)


async def test_the_five_checks_run_at_once(lab: Lab) -> None:
    delay = 0.3
    resolver = DelayedResolver(DnsResolver([(lab.host, lab.dns_port)], timeout=2), delay)
    run = DiagnosticsRun(Target(domain=zones.GOOD, timeout=2), [c() for c in DNS_CHECKS], resolver)
    started = time.monotonic()
    report = await run.run()
    elapsed = time.monotonic() - started
    assert [r.status for r in report.ordered()] == [Status.PASS] * 5
    assert resolver.count >= 7
    # One after another this is 7 look-ups; at once it is the SPF tree's depth of 2.
    assert elapsed < 3 * delay, elapsed
