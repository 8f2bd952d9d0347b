"""The five DNS checks: MX, SPF, DKIM, DMARC and autodiscover of the domain a device sends as.

Each ends, when something is wrong, in the record to publish written out in full (``records``), because
the person reading the report is often not the one who edits the DNS. Independent look-ups of a check
run at once, and the runner runs the five checks at once, so the DNS part costs about one round trip
plus the depth of the SPF tree.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any, ClassVar

from relaywizard.core import m365
from relaywizard.diagnostics import records
from relaywizard.diagnostics.base import Check, Context, DnsLookupError
from relaywizard.diagnostics.model import CheckResult, Group, Method, Status
from relaywizard.diagnostics.spf import SpfEvaluation, SpfSyntaxError, evaluate, parse_spf, spf_records

__all__ = [
    "DNS_CHECKS",
    "AutodiscoverCheck",
    "DkimCheck",
    "DmarcCheck",
    "MxCheck",
    "SpfCheck",
]


_LIMIT = m365.SPF_MAX_DNS_LOOKUPS


def _domain(ctx: Context) -> str:
    return ctx.target.domain.strip().rstrip(".").lower()


def _host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _method_name(method: Method) -> str:
    return m365.SENDING_METHODS[method].name


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


_DNS_FIXES = {
    "nxdomain": "Check the spelling of {domain}. If it is right, the domain is not registered or its DNS "
    "host does not serve it: renew it at the registrar or add its zone at the DNS host.",
    "timeout": "Make sure this computer can reach the DNS server {server} (UDP and TCP; firewall, VPN), or "
    "ask another DNS server (--dns-server). If other domains resolve, the name servers of {domain} are not "
    "answering: contact its DNS host.",
    "servfail": "The name servers of {domain} could not give a valid answer, usually a broken delegation or "
    "DNSSEC: check the NS and DS records at the registrar, or ask the DNS host.",
    "refused": "{server} refuses to answer for {domain}: ask a DNS server that serves this network "
    "(--dns-server), or allow this computer to query it.",
    "error": "Try again, or ask another DNS server (--dns-server).",
}


def dns_failure(check: Check, error: DnsLookupError, domain: str) -> CheckResult:
    """A look-up that got no usable answer: the summary names the kind and the server asked."""
    fix = _DNS_FIXES[error.kind].format(domain=domain, server=error.server)
    data = {"error": {"kind": error.kind, "name": error.name, "type": error.rdtype, "server": error.server}}
    return check.result(Status.FAIL, _sentence(error.describe()), fix=fix, data=data)


async def _require_domain(ctx: Context) -> None:
    """A name below the domain does not exist; raise unless the domain itself does.

    Without this a mistyped domain would read as "DKIM/DMARC/autodiscover not set up" with records to add.
    """
    await ctx.resolver.query(_domain(ctx), "SOA")


async def _cname(ctx: Context, name: str) -> str | None:
    """The CNAME target of ``name`` or None. Asked as type CNAME: an authoritative-only server does not
    chase it, and a resolver that does would hide where it points."""
    try:
        answers = await ctx.resolver.query(name, "CNAME")
    except DnsLookupError as exc:
        if exc.kind != "nxdomain":
            raise
        return None
    return _host(answers[0]) if answers else None


class _DnsCheck(Check):
    group: ClassVar[Group] = "dns"
    steps: ClassVar[int] = 2  # the look-up, then (for a missing name) whether the domain exists at all


# -- MX ----------------------------------------------------------------------------------------------------


class MxCheck(_DnsCheck):
    """Where the domain's mail goes; Direct Send and connector relay connect to that Microsoft 365 host."""

    id = "dns.mx"
    title = "MX record"
    steps = 1

    async def run(self, ctx: Context) -> CheckResult:
        domain = _domain(ctx)
        method = ctx.target.method
        ctx.progress(f"Looking up MX for {domain}")
        try:
            answers = await ctx.resolver.query(domain, "MX")
        except DnsLookupError as exc:
            return dns_failure(self, exc, domain)
        preferences = sorted(_mx(answer) for answer in answers)
        usable = [(pref, host) for pref, host in preferences if host]  # "0 ." is a null MX (RFC 7505)
        hosts = [host for _, host in usable]
        microsoft = [host for host in hosts if m365.is_microsoft_mx(host)]
        others = [host for host in hosts if not m365.is_microsoft_mx(host)]
        data: dict[str, Any] = {
            "hosts": hosts,
            "records": [{"preference": pref, "host": host} for pref, host in usable],
            "microsoft_hosts": microsoft,
        }
        expected = records.expected_mx(domain).line()
        newer = f"(a newer domain gets a host under {m365.MX_SUFFIX_NEW} instead; the admin center shows it)"
        if not hosts:
            return self.result(
                Status.FAIL,
                f"{domain} has no MX record.",
                fix=f"Add this MX record {newer}:\n{expected}",
                data=data,
            )
        if not others:
            return self.passed(f"MX points to Microsoft 365: {', '.join(hosts)}.", **data)
        listed = ", ".join(others)
        if microsoft:
            return self.result(
                Status.WARN,
                f"Mail for {domain} does not go only to Microsoft 365: the MX also lists {listed}.",
                fix=f"If every mailbox of {domain} is in Microsoft 365, delete the MX records for {listed} "
                f"and keep {', '.join(microsoft)}.",
                data=data,
            )
        if method == "smtp-auth":
            return self.result(
                Status.WARN,
                f"The MX of {domain} is not Microsoft 365 ({listed}); SMTP AUTH does not depend on it.",
                fix=f"Nothing to change for SMTP AUTH if mail for {domain} is meant to go to {listed}. "
                f"If its mailboxes are in Microsoft 365, replace the MX records with this one {newer}:\n"
                f"{expected}",
                data=data,
            )
        endpoint = m365.SMTP_AUTH_ENDPOINT
        return self.result(
            Status.FAIL,
            f"{domain} has no Microsoft 365 MX ({listed}), so {_method_name(method)} has no Microsoft 365 "
            "endpoint to connect to.",
            fix=f"If mail for {domain} stays with {listed}, send with SMTP AUTH "
            f"({endpoint.host}:{endpoint.port}) instead. Otherwise replace the MX records with this one "
            f"{newer}:\n{expected}",
            data=data,
        )


def _mx(answer: str) -> tuple[int, str]:
    preference, _, host = answer.strip().partition(" ")
    try:
        number = int(preference)
    except ValueError:
        number = 65535
    return number, _host(host)


# -- SPF ---------------------------------------------------------------------------------------------------


class SpfCheck(_DnsCheck):
    """Receivers check Microsoft's servers (and a relay's IP) against SPF; a broken record fails it all."""

    id = "dns.spf"
    title = "SPF record"
    steps = 4  # the record, then its include levels (each level's look-ups at once)

    async def run(self, ctx: Context) -> CheckResult:
        domain = _domain(ctx)
        method = ctx.target.method
        relay_ip = ctx.target.relay_ip if method in records.RELAY_IP_METHODS else None
        if relay_ip is not None and not _is_ip(relay_ip):
            return self.result(
                Status.FAIL,
                f"The relay IP {relay_ip!r} is not an IP address, so SPF cannot be checked against it.",
                fix="Give the office's public IP address, as in 203.0.113.10.",
            )
        ctx.progress(f"Looking up SPF (TXT) for {domain}")
        try:
            texts = await ctx.resolver.query(domain, "TXT")
        except DnsLookupError as exc:
            return dns_failure(self, exc, domain)
        found = spf_records(texts)
        data: dict[str, Any] = {"record": found[0] if len(found) == 1 else None, "records": found}
        if not found:
            value = records.spf_fix(None, relay_ip, method)
            data["suggested"] = value
            return self.result(
                Status.FAIL,
                f"{domain} has no SPF record.",
                fix=f"Add this TXT record to {domain}: {value}",
                data=data,
            )
        if len(found) > 1:
            value = records.spf_fix(found, relay_ip, method)
            data["suggested"] = value
            return self.result(
                Status.FAIL,
                f"{domain} has {len(found)} SPF records; receivers treat that as an error (permerror).",
                fix=f"Replace them with this one TXT record: {value}",
                data=data,
            )
        try:
            record = parse_spf(found[0])
        except SpfSyntaxError as exc:
            value = records.spf_fix(found[0], relay_ip, method)
            data["syntax_error"] = {"term": exc.term, "reason": exc.reason}
            data["suggested"] = value
            return self.result(
                Status.FAIL,
                f"The SPF record has a syntax error in {exc.term!r}: {exc.reason}.",
                fix=f"Change the TXT record of {domain} to: {value}",
                data=data,
            )
        spf = await evaluate(ctx.resolver, domain, record, relay_ip, ctx.progress)
        data.update(_evaluation_data(spf))
        return self._judge(spf, domain, method, data)

    def _judge(self, spf: SpfEvaluation, domain: str, method: Method, data: dict[str, Any]) -> CheckResult:
        failures: list[str] = []
        warnings: list[str] = []
        advice: list[str] = []
        incomplete = any(error.kind == "dns" for error in spf.errors)
        for error in spf.errors:
            if error.kind == "dns":
                failures.append(f"SPF could not be checked completely: {error.message}")
                advice.append(f"Check {error.term} again later; if it keeps failing, its DNS host is broken.")
            else:
                failures.append(f"{error.message} (receivers treat that as permerror)")
                advice.append(f"Correct or remove {error.term}.")
        if spf.lookups > _LIMIT:
            count = f"{spf.lookups}" if spf.complete else f"at least {spf.lookups}"
            failures.append(
                f"SPF needs {count} DNS look-ups counted through its includes; the limit is {_LIMIT}, "
                "so receivers fail it (permerror)"
            )
            costs = sorted(spf.lookups_by_term.items(), key=lambda item: -item[1])
            advice.append(
                f"Bring the look-ups down to {_LIMIT}: replace a, mx and ptr terms with the ip4:/ip6: "
                f"addresses they stand for, and remove includes of services that no longer send for {domain} "
                f"(look-ups per term: {', '.join(f'{term} {n}' for term, n in costs)})."
            )
        if spf.all == "+all":
            failures.append(f"the SPF record ends in +all, which lets any server send as {domain}")
        if not spf.includes_microsoft and not incomplete:
            failures.append(f"SPF does not include {m365.SPF_INCLUDE}")
        relay_missing = spf.relay_ip is not None and not spf.relay_ip_covered and not incomplete
        if relay_missing:
            failures.append(
                f"SPF does not cover the relay IP {spf.relay_ip}, so mail sent by {_method_name(method)} "
                "fails SPF"
            )
        if spf.all == "?all":
            warnings.append("the SPF record ends in ?all (neutral), which protects nothing")
        elif spf.all is None:
            warnings.append("the SPF record has no all term, so any other server gets a neutral result")
        if spf.uses_ptr:
            warnings.append("the SPF record uses ptr, which is slow, unreliable and deprecated (RFC 7208)")
        if not failures and not warnings:
            return self.passed(_pass_summary(spf, method), **data)
        steps = []
        rewrite = (
            spf.all not in ("-all", "~all")
            or spf.uses_ptr
            or (not spf.includes_microsoft and not incomplete)
            or relay_missing
        )
        if rewrite:
            relay = spf.relay_ip if relay_missing else None
            value = records.spf_fix(spf.record.text, relay, method, nested_include=spf.includes_microsoft)
            data["suggested"] = value
            steps.append(f"Change the TXT record of {domain} to: {value}")
        steps += advice
        status = Status.FAIL if failures else Status.WARN
        return self.result(status, _sentence("; ".join(failures + warnings)), fix="\n".join(steps), data=data)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _pass_summary(spf: SpfEvaluation, method: Method) -> str:
    parts = [f"SPF includes {m365.SPF_INCLUDE}"]
    if spf.relay_ip is not None:
        parts.append(f"covers the relay IP {spf.relay_ip}")
    parts.append(f"ends in {spf.all}")
    parts.append(f"needs {spf.lookups} of {_LIMIT} DNS look-ups")
    text = ", ".join(parts[:-1]) + " and " + parts[-1] + "."
    if spf.relay_ip is None and method in records.RELAY_IP_METHODS:
        text += " The office's public IP was not checked (no relay IP given)."
    return text


def _evaluation_data(spf: SpfEvaluation) -> dict[str, Any]:
    return {
        "lookups": spf.lookups,
        "lookups_complete": spf.complete,
        "lookups_by_term": spf.lookups_by_term,
        "includes_microsoft": spf.includes_microsoft,
        "all": spf.all,
        "ptr": spf.uses_ptr,
        "relay_ip": spf.relay_ip,
        "relay_ip_covered": spf.relay_ip_covered,
        "errors": [error.message for error in spf.errors],
    }


# -- DKIM --------------------------------------------------------------------------------------------------


class DkimCheck(_DnsCheck):
    """Microsoft 365 signs mail for the domain only when both selector CNAMEs point into the tenant."""

    id = "dns.dkim"
    title = "DKIM records"

    async def run(self, ctx: Context) -> CheckResult:
        domain = _domain(ctx)
        names = {selector: f"{selector}._domainkey.{domain}" for selector in m365.DKIM_SELECTORS}
        ctx.progress(f"Looking up DKIM CNAMEs ({', '.join(m365.DKIM_SELECTORS)}) for {domain}")
        try:
            found = await asyncio.gather(*(_cname(ctx, name) for name in names.values()))
            targets = dict(zip(names, found, strict=True))
            if not any(targets.values()):
                await _require_domain(ctx)
        except DnsLookupError as exc:
            return dns_failure(self, exc, domain)
        data: dict[str, Any] = {"targets": dict(targets)}
        good = {s: t for s, t in targets.items() if t and m365.is_microsoft_dkim_target(t, domain, s)}
        if len(good) == len(targets):
            return self.passed(f"DKIM selectors {' and '.join(names)} point to Microsoft 365.", **data)
        problems = []
        for selector, target in targets.items():
            if target is None:
                problems.append(f"{names[selector]} has no CNAME record")
            elif selector not in good:
                problems.append(f"{names[selector]} points to {target}, not Microsoft 365")
        known = next(iter(good.values()), None)
        wanted = [
            r for r in records.dkim_records(domain, known_target=known) if r.name.split(".")[0] not in good
        ]
        data["expected"] = {r.name: r.value for r in wanted}
        verb = "this CNAME record" if len(wanted) == 1 else "these CNAME records"
        lines = [f"Publish {verb}, then turn on DKIM signing for {domain} in Microsoft Defender:"]
        lines += [r.line() for r in wanted]
        if not known:
            lines.append(
                f"({records.TENANT_PLACEHOLDER} is the first part of the tenant's {m365.DKIM_TARGET_SUFFIX} "
                f"domain; newer domains use a host under {m365.DKIM_TARGET_SUFFIX_NEW}. The DKIM page of "
                "Microsoft Defender shows the exact targets.)"
            )
        return self.result(
            Status.WARN,
            f"DKIM is not set up for Microsoft 365: {'; '.join(problems)}.",
            fix="\n".join(lines),
            data=data,
        )


# -- DMARC -------------------------------------------------------------------------------------------------


class DmarcCheck(_DnsCheck):
    """The domain's DMARC policy: what receivers do with mail that fails SPF and DKIM."""

    id = "dns.dmarc"
    title = "DMARC record"

    async def run(self, ctx: Context) -> CheckResult:
        domain = _domain(ctx)
        name = f"_dmarc.{domain}"
        ctx.progress(f"Looking up DMARC (TXT) for {name}")
        try:
            try:
                texts = await ctx.resolver.query(name, "TXT")
            except DnsLookupError as exc:
                if exc.kind != "nxdomain":
                    raise
                await _require_domain(ctx)
                texts = []
        except DnsLookupError as exc:
            return dns_failure(self, exc, domain)
        found = [text.strip() for text in texts if text.strip()]
        data: dict[str, Any] = {"record": found[0] if len(found) == 1 else None, "records": found}
        if not found:
            return self.result(
                Status.WARN,
                f"{domain} has no DMARC record: receivers have no policy for mail that fails SPF and DKIM.",
                fix="Publish this TXT record (add rua=mailto:<address> to it to receive reports):\n"
                + records.dmarc_record(domain),
                data=data,
            )
        fixed = records.dmarc_fix(domain, found)
        if len(found) > 1:
            return self.result(
                Status.FAIL,
                f"{name} has {len(found)} TXT records; with more than one, receivers ignore DMARC.",
                fix=f"Delete all but one and make it:\n{fixed}",
                data=data,
            )
        record = found[0]
        tags = records.dmarc_tags(record)
        policy = tags.get("p", "").lower()
        data.update(tags=tags, policy=policy or None)
        version_name, _, version = record.split(";")[0].partition("=")
        if version_name.strip().lower() != "v" or version.strip() != "DMARC1":
            problem = f"The DMARC record does not start with v=DMARC1 ({record.split(';')[0].strip()!r})"
        elif "p" not in tags:
            problem = "The DMARC record has no p= policy tag"
        elif policy not in m365.DMARC_POLICIES:
            problem = f"The DMARC policy p={tags['p']} is not valid (none, quarantine or reject)"
        else:
            problem = ""
        if problem:
            return self.result(
                Status.FAIL,
                f"{problem}, so receivers ignore it.",
                fix=f"Change the TXT record to:\n{fixed}",
                data=data,
            )
        if policy == "none":
            return self.result(
                Status.WARN,
                f"DMARC is p=none: it only monitors, and mail forged as {domain} is still delivered.",
                fix=f"Once reports show your own mail passing, change the TXT record to:\n{fixed}",
                data=data,
            )
        return self.passed(f"DMARC policy is p={policy}.", **data)


# -- autodiscover ------------------------------------------------------------------------------------------


class AutodiscoverCheck(_DnsCheck):
    """Outlook and phones find the mailbox through it; its absence also hints the domain is not set up."""

    id = "dns.autodiscover"
    title = "Autodiscover record"

    async def run(self, ctx: Context) -> CheckResult:
        domain = _domain(ctx)
        expected = records.expected_autodiscover(domain)
        ctx.progress(f"Looking up CNAME for {expected.name}")
        try:
            target = await _cname(ctx, expected.name)
            if target is None:
                await _require_domain(ctx)
        except DnsLookupError as exc:
            return dns_failure(self, exc, domain)
        data = {"target": target}
        if target == _host(m365.AUTODISCOVER_TARGET):
            return self.passed(f"{expected.name} points to {target}.", **data)
        if target is None:
            summary = f"{expected.name} has no CNAME record, so Outlook cannot find mailbox settings itself."
            fix = f"Add this CNAME record:\n{expected.line()}"
        else:
            summary = f"{expected.name} points to {target}, not to {m365.AUTODISCOVER_TARGET}."
            fix = f"Change the record to:\n{expected.line()}"
        return self.result(Status.WARN, summary, fix=fix, data=data)


DNS_CHECKS: tuple[type[Check], ...] = (MxCheck, SpfCheck, DkimCheck, DmarcCheck, AutodiscoverCheck)
