"""What the admin takes away at the end of the wizard, computed from a ``SetupPlan``; no Qt.

The summary page and the exported report show the same things, so both are made here: the settings to
type into the device, the tenant changes (PowerShell and DNS records, from the test findings when there
are some), the test outcome, and the profile the CLI and the relay read from the settings file.

Nothing here reads a secret: the password is named by its keyring profile, never shown.
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from relaywizard.core import advisor, app_registration, checklist, m365, settings, trace, validate
from relaywizard.core.plan import SetupPlan, UseCase
from relaywizard.diagnostics import powershell, records
from relaywizard.diagnostics.model import CheckResult, Report, Status
from relaywizard.diagnostics.records import DnsRecord

__all__ = [
    "DnsChange",
    "Handover",
    "Outcome",
    "TenantChanges",
    "build",
    "device_settings",
    "message_trace",
    "method_reasons",
    "method_title",
    "method_warnings",
    "outcome",
    "profile_from_plan",
    "save_profile",
    "suggested_profile_name",
    "tenant_changes",
]

_RELAY_PORT = settings.DEFAULT_LISTEN_PORT
#: What the device is told when the relay listens on every interface (or only on loopback).
_THIS_COMPUTER = "this computer's address on the office network"


# -- the method --------------------------------------------------------------------------------------------


def method_title(plan: SetupPlan) -> str:
    """``SMTP AUTH with a password``, ``The local relay on this computer, sending by ...`` (as advised)."""
    return advisor.describe(plan.method, plan.auth, plan.relay.enabled)


def _advice(plan: SetupPlan) -> advisor.Recommendation | None:
    """The advisor's recommendation when it is what the plan does (the admin kept it), else None."""
    if plan.use_case is UseCase.VALIDATE or plan.method_overridden:
        return None
    advice = advisor.recommend(plan.capabilities, plan.use_case)
    chosen = (plan.method, plan.auth, plan.relay.enabled)
    return advice if (advice.method, advice.auth, advice.local_relay) == chosen else None


def method_reasons(plan: SetupPlan) -> list[str]:
    """Why this method, one sentence each: the advisor's reasons, or the facts of a method chosen by hand."""
    advice = _advice(plan)
    if advice is not None:
        return list(advice.reasons)
    method = m365.SENDING_METHODS[plan.method]
    if plan.use_case is UseCase.VALIDATE:
        reasons = ["Existing settings were validated; relaywizard did not choose the method."]
    else:
        recommended = advisor.recommend(plan.capabilities, plan.use_case).headline
        recommended = recommended.replace("The local relay", "the local relay", 1)
        reasons = [f"Chosen by the admin instead of the recommended {recommended}."]
    recipients = (
        "inside and outside the organisation"
        if method.external_recipients
        else "inside the organisation only"
    )
    return [
        *reasons,
        f"It reaches people {recipients}.",
        f"The sender must be {method.sender_rule}.",
        f"Limits: {method.limits_detail}.",
        f"It needs {', '.join(method.needs)}.",
    ]


def method_warnings(plan: SetupPlan) -> list[str]:
    """What can go wrong or needs doing with this choice, one sentence each."""
    advice = _advice(plan)
    if advice is not None:
        return list(advice.warnings)
    caps, method, auth, relay = plan.capabilities, plan.method, plan.auth, plan.relay.enabled
    found = [] if plan.use_case is UseCase.VALIDATE else advisor.problems(caps, method, auth, relay)
    return found + advisor.risks(method, auth, relay)


# -- the device --------------------------------------------------------------------------------------------


def _mx_host(plan: SetupPlan) -> str:
    """The MX endpoint: the Microsoft 365 host the tests found (right for either format), else the classic."""
    result = plan.report.result("dns.mx") if plan.report else None
    found = result.data.get("microsoft_hosts") if result else None
    if isinstance(found, list) and found and isinstance(found[0], str):
        return found[0]
    return m365.mx_endpoint_for(plan.tenant.domain) if plan.tenant.domain else m365.MX_HOST_PLACEHOLDER


def _relay_address(listen: str) -> tuple[str, int]:
    """The host and port a device connects to for the relay listening on ``listen``."""
    try:
        host, port = validate.host_port(listen, _RELAY_PORT) if listen.strip() else ("", _RELAY_PORT)
    except ValueError:
        return _THIS_COMPUTER, _RELAY_PORT
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return (host or _THIS_COMPUTER), port
    if address.is_unspecified or address.is_loopback:
        return _THIS_COMPUTER, port
    return host, port


def _sender(plan: SetupPlan) -> str:
    sender = plan.tenant.sender.strip() or plan.tenant.mailbox.strip()
    if sender:
        return sender
    domain = plan.tenant.domain.strip()
    return f"any address @{domain}" if domain else "an address of your domain"


def _password_text(plan: SetupPlan) -> str:
    if plan.secret_stored and plan.profile:
        where = f" ({plan.keyring_backend})" if plan.keyring_backend else ""
        return f"the one saved in the keyring profile “{plan.profile}”{where}"
    return "the mailbox's password (relaywizard has not saved it)"


def device_settings(plan: SetupPlan) -> list[tuple[str, str]]:
    """Exactly what to type into the device, as (label, value) rows; the password only by its keyring name."""
    caps = plan.capabilities
    if plan.relay.enabled:
        host, port = _relay_address(plan.relay.listen)
        return [
            ("Server (SMTP host)", host),
            ("Port", str(port)),
            ("Security", "None (the relay accepts plain SMTP from allowed devices)"),
            ("Authentication", "None (the device's address is on the relay's allow-list)"),
            ("Sender (From)", _sender(plan)),
        ]
    if plan.method == "smtp-auth":
        port = m365.SMTP_AUTH_ALTERNATIVE_PORT if caps.port_587 is False else m365.SMTP_AUTH_ENDPOINT.port
        rows = [
            ("Server (SMTP host)", m365.SMTP_AUTH_ENDPOINT.host),
            ("Port", str(port)),
            ("Security", "STARTTLS (TLS 1.2 or later)"),
        ]
        mailbox = plan.tenant.mailbox or "the mailbox's address"
        if plan.auth == "oauth":
            oauth = plan.oauth
            rows += [
                ("Authentication", "OAuth 2.0 (XOAUTH2)"),
                ("User name", mailbox),
                ("Password", "none: the application signs in with OAuth 2.0"),
            ]
            if oauth.tenant:
                rows.append(("Tenant", oauth.tenant))
            if oauth.client_id:
                rows.append(("Application (client) ID", oauth.client_id))
        else:
            rows += [
                ("Authentication", "User name and password (SMTP AUTH)"),
                ("User name", mailbox),
                ("Password", _password_text(plan)),
            ]
        return [*rows, ("Sender (From)", _sender(plan))]
    if plan.method == "direct-send":
        security = "None" if caps.tls12 is False else "STARTTLS if the device offers it, otherwise none"
    else:
        security = "STARTTLS (the connector requires it)"
    return [
        ("Server (SMTP host)", _mx_host(plan)),
        ("Port", str(m365.MX_PORT)),
        ("Security", security),
        ("Authentication", "None"),
        ("Sender (From)", _sender(plan)),
    ]


# -- the tenant --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DnsChange:
    """A record to publish (or, with ``delete``, to remove) and why, in one sentence."""

    record: DnsRecord
    why: str
    delete: bool = False

    def line(self) -> str:
        return self.record.line()


@dataclass(frozen=True)
class TenantChanges:
    powershell: str
    """Exchange Online PowerShell for the method, starting with the read-only commands showing the state."""
    dns: tuple[DnsChange, ...]
    """Records that need changing (from the tests), or every expected one for checks that did not run."""
    tested: bool
    """True when the DNS records come from the tests' findings (then an empty ``dns`` means all is well)."""

    def dns_text(self) -> str:
        """The records as zone-file-like lines, each after a ``;`` comment saying why; ready to paste."""
        if not self.dns:
            return "; Nothing to change: the tests found the DNS records in order." if self.tested else ""
        blocks: list[list[str]] = []
        last_why = None
        for change in self.dns:
            if change.why != last_why:  # DKIM's two selectors share one explanation
                blocks.append([f"; {change.why}"])
                last_why = change.why
            blocks[-1].append(("; DELETE " if change.delete else "") + change.line())
        return "\n\n".join("\n".join(block) for block in blocks)


def _powershell(plan: SetupPlan) -> str:
    tenant = plan.tenant
    if plan.method == "connector":
        try:
            blocks = [
                powershell.inbound_connector(
                    tenant.public_ip or None, certificate_name=tenant.certificate_name or None
                )
            ]
        except ValueError:  # an address a connector cannot take: leave the placeholder for the admin
            blocks = [powershell.inbound_connector(None)]
    else:
        blocks = [powershell.for_method(plan.method, mailbox=tenant.mailbox or None)]
    sender, mailbox = tenant.sender.strip(), tenant.mailbox.strip()
    if plan.method == "smtp-auth" and sender and mailbox and sender.lower() != mailbox.lower():
        blocks.append(powershell.grant_send_as(sender, mailbox))
    if plan.method == "smtp-auth" and plan.auth == "oauth" and plan.oauth.kind == "oauth-app":
        blocks.append(app_registration.exchange_block(plan.oauth.client_id, mailbox, plan.oauth.object_id))
    if plan.relay.enabled and plan.relay.senders:
        blocks.append(_device_senders(plan, sender or mailbox, mailbox))
    # Every block starts by saying how to connect; once is enough.
    first = blocks[0].splitlines()[0]
    rest = [b.split("\n", 1)[1] if b.startswith(first + "\n") else b for b in blocks[1:]]
    return "\n\n".join([blocks[0], *rest])


def _device_senders(plan: SetupPlan, default: str, mailbox: str) -> str:
    """What the tenant needs so each device's own sender (the relay's sender map) is accepted."""
    aliases: dict[str, str] = {}
    for address in plan.relay.senders.values():
        if address.lower() not in (default.lower(), mailbox.lower()):
            aliases.setdefault(address.lower(), address)
    listed = ", ".join(aliases.values()) or "the mailbox itself"
    header = f"# A sender per device through the relay: {listed}."
    if plan.method != "smtp-auth":
        return "\n".join(
            [
                powershell.CONNECT_LINE,
                header,
                "# Through a connector (or Direct Send) any address of an accepted domain may be the sender;",
                "# nothing needs granting. Check each address exists, so replies reach someone:",
                *(f"Get-Recipient -Identity '{address}'" for address in aliases.values()),
            ]
        )
    lines = [powershell.CONNECT_LINE, header]
    if plan.auth == "oauth" and plan.oauth.kind == "oauth-app":
        covered = [mailbox, *aliases.values()]
        where = " -or ".join(f"PrimarySmtpAddress -eq '{address}'" for address in covered)
        lines += [
            "# App-only: the RBAC for Applications scope must cover the mailbox and every device's sender.",
            f'New-ManagementScope -Name "relaywizard device senders" -RecipientRestrictionFilter "{where}"',
            f"New-ManagementRoleAssignment -App '{plan.oauth.client_id or '<application (client) id>'}' "
            '-Role "Application SMTP.SendAsApp" -CustomResourceScope "relaywizard device senders"',
        ]
    for address in aliases.values():
        lines.append(
            f"Add-RecipientPermission -Identity '{address}' -Trustee '{mailbox or '<signed-in mailbox>'}' "
            "-AccessRights SendAs -Confirm:$false"
        )
    return "\n".join(lines)


def _checked(report: Report | None, check_id: str) -> CheckResult | None:
    """The check's result when it actually looked (not skipped, not a failed look-up)."""
    result = report.result(check_id) if report else None
    if result is None or result.status is Status.SKIP or "error" in result.data:
        return None
    return result


def _relay_ip(plan: SetupPlan) -> str | None:
    ip = plan.tenant.public_ip.strip()
    if plan.method not in records.RELAY_IP_METHODS or not ip:
        return None
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return None
    return ip


def _spf(plan: SetupPlan, domain: str) -> list[DnsChange]:
    result = _checked(plan.report, "dns.spf")
    if result is None:
        ip = _relay_ip(plan)
        also = f" and the office's IP {ip}" if ip else ""
        value = records.spf_fix(None, ip, plan.method)
        why = (
            f"SPF (not tested): one TXT record naming Microsoft 365{also}; merge these terms into the "
            "existing v=spf1 record if there is one (a domain may have only one)."
        )
        return [DnsChange(records.spf_record(domain, value), why)]
    suggested = result.data.get("suggested")
    if result.status is Status.PASS or not isinstance(suggested, str):
        return []
    old = result.data.get("records") or []
    verb = "Replace the SPF record(s) with this one" if old else "Add this SPF record"
    return [DnsChange(records.spf_record(domain, suggested), f"{verb}: {result.summary}")]


def _dmarc(plan: SetupPlan, domain: str) -> list[DnsChange]:
    result = _checked(plan.report, "dns.dmarc")
    name = f"_dmarc.{domain}"
    if result is None:
        record = DnsRecord(name, "TXT", records.dmarc_value())
        return [DnsChange(record, "DMARC (not tested): the policy receivers apply to forged mail.")]
    found = result.data.get("records")
    if result.status is Status.PASS or not isinstance(found, list):
        return []
    if found:
        # dmarc_fix writes the record as a line; its value is what follows the type.
        value = records.dmarc_fix(domain, [str(f) for f in found]).partition(" TXT ")[2].strip('"')
    else:
        value = records.dmarc_value()
    return [DnsChange(DnsRecord(name, "TXT", value), f"DMARC: {result.summary}")]


def _dkim(plan: SetupPlan, domain: str) -> list[DnsChange]:
    result = _checked(plan.report, "dns.dkim")
    if result is None:
        why = (
            f"DKIM (not tested): replace {records.TENANT_PLACEHOLDER} with the first part of the tenant's "
            f"{m365.DKIM_TARGET_SUFFIX} domain (the DKIM page of Microsoft Defender shows the exact "
            "targets), then turn on DKIM signing there."
        )
        return [DnsChange(r, why) for r in records.dkim_records(domain)]
    expected = result.data.get("expected")
    if result.status is Status.PASS or not isinstance(expected, dict):
        return []
    why = f"DKIM: {result.summary} Then turn on DKIM signing in Microsoft Defender."
    if any(records.TENANT_PLACEHOLDER in str(v) for v in expected.values()):
        why += (
            f" ({records.TENANT_PLACEHOLDER} is the first part of the tenant's {m365.DKIM_TARGET_SUFFIX} "
            "domain.)"
        )
    return [DnsChange(DnsRecord(str(n), "CNAME", str(v)), why) for n, v in expected.items()]


def _mx(plan: SetupPlan, domain: str) -> list[DnsChange]:
    result = _checked(plan.report, "dns.mx")
    expected = records.expected_mx(domain)
    if result is None:
        why = (
            "MX (not tested): where mail for the domain goes; a domain added to Microsoft 365 since mid-2026 "
            f"gets a host under {m365.MX_SUFFIX_NEW} instead (the admin center shows it)."
        )
        return [DnsChange(expected, why)]
    if result.status is Status.PASS:
        return []
    microsoft = result.data.get("microsoft_hosts") or []
    found: list[dict[str, Any]] = [r for r in result.data.get("records") or [] if isinstance(r, dict)]
    if not found:
        return [DnsChange(expected, f"MX: {result.summary}")]
    if microsoft:
        others = [r for r in found if r.get("host") not in microsoft]
        why = f"MX: {result.summary} Delete it if every mailbox of {domain} is in Microsoft 365."
        return [
            DnsChange(DnsRecord(domain, "MX", f"{r.get('preference')} {r.get('host')}"), why, delete=True)
            for r in others
        ]
    if plan.method == "smtp-auth":
        return []  # SMTP AUTH does not depend on the MX; the test result explains it
    return [DnsChange(expected, f"MX: {result.summary}")]


def _autodiscover(plan: SetupPlan, domain: str) -> list[DnsChange]:
    result = _checked(plan.report, "dns.autodiscover")
    if result is None or result.status is Status.PASS:
        return []  # not needed to send mail: only worth changing when the tests flagged it
    why = f"Autodiscover (for Outlook and phones, not the device): {result.summary}"
    return [DnsChange(records.expected_autodiscover(domain), why)]


def tenant_changes(plan: SetupPlan) -> TenantChanges:
    """The PowerShell for the method and the DNS records to publish, from the tests' findings if any."""
    domain = plan.tenant.domain.strip().rstrip(".").lower()
    dns: list[DnsChange] = []
    if domain:
        for part in (_mx, _spf, _dkim, _dmarc, _autodiscover):
            dns += part(plan, domain)
    tested = plan.report is not None and all(
        _checked(plan.report, check) is not None for check in ("dns.mx", "dns.spf", "dns.dkim", "dns.dmarc")
    )
    return TenantChanges(powershell=_powershell(plan), dns=tuple(dns), tested=tested)


# -- the tests ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One line about the last test run, and the status to show beside it (None: not tested)."""

    status: Status | None
    text: str
    counts: dict[Status, int]
    message_id: str | None = None


def outcome(plan: SetupPlan) -> Outcome:
    """``All 14 checks passed in 2.3 s.`` / ``2 failed, 1 warning, ...`` / ``Not tested.``"""
    report = plan.report
    counts = {status: 0 for status in Status}
    if report is None or not report.results:
        return Outcome(None, "Not tested: run the tests to prove these settings work.", counts)
    for result in report.results:
        counts[result.status] += 1
    seconds = f" in {report.duration_ms / 1000:.1f} s" if report.duration_ms else ""
    total = len(report.results)
    if counts[Status.FAIL]:
        status = Status.FAIL
    elif counts[Status.WARN]:
        status = Status.WARN
    elif counts[Status.PASS]:
        status = Status.PASS
    else:
        status = Status.SKIP
    if status is Status.PASS and not counts[Status.SKIP]:
        text = f"All {total} checks passed{seconds}."
    else:
        parts = [
            _count(counts[Status.FAIL], "failed", "failed"),
            _count(counts[Status.WARN], "warning", "warnings"),
            _count(counts[Status.PASS], "passed", "passed"),
            _count(counts[Status.SKIP], "skipped", "skipped"),
        ]
        text = ", ".join(p for p in parts if p) + f" of {total} checks{seconds}."
    if report.cancelled:
        text += " The run was cancelled before every check had finished."
    if plan.test_message_id:
        text += " A test message was sent."
    return Outcome(status, text, counts, plan.test_message_id)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}" if n else ""


# -- everything at once ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handover:
    """Everything the summary page and the report show."""

    domain: str
    method: str
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    settings: tuple[tuple[str, str], ...]
    changes: TenantChanges
    outcome: Outcome
    checks: tuple[CheckResult, ...]
    trace: trace.Trace | None = None
    """How to find the test message in Microsoft 365's message trace, when one was sent."""
    checklist: checklist.Checklist | None = None
    """The rollout checklist for the method, with each step's state from the tests."""


def message_trace(plan: SetupPlan) -> trace.Trace | None:
    """The trace of the plan's test message: sent when the DATA check says (else the time in its ID)."""
    message_id = plan.test_message_id
    if not message_id:
        return None
    result = plan.report.result("smtp.data") if plan.report else None
    sent = None
    if result is not None and result.data.get("message_id") == message_id:
        with contextlib.suppress(TypeError, ValueError):
            sent = datetime.fromisoformat(str(result.data.get("sent")).replace("Z", "+00:00"))
    return trace.trace_for(message_id, sent=sent)


def build(plan: SetupPlan, *, relay_running: bool | None = None) -> Handover:
    """Everything the summary and the report show, for this plan (``relay_running``: see checklist)."""
    return Handover(
        domain=plan.tenant.domain,
        method=method_title(plan),
        reasons=tuple(method_reasons(plan)),
        warnings=tuple(method_warnings(plan)),
        settings=tuple(device_settings(plan)),
        changes=tenant_changes(plan),
        outcome=outcome(plan),
        checks=tuple(plan.report.ordered()) if plan.report else (),
        trace=message_trace(plan),
        checklist=checklist.build(plan, relay_running=relay_running),
    )


# -- the profile -------------------------------------------------------------------------------------------


def suggested_profile_name(plan: SetupPlan) -> str:
    """The plan's profile name, or one made from the use case and the domain (``scanner-contoso-com``)."""
    if plan.profile:
        return plan.profile
    base = "device" if plan.use_case is UseCase.VALIDATE else plan.use_case.value
    domain = m365.domain_with_dashes(plan.tenant.domain) if plan.tenant.domain else ""
    return f"{base}-{domain}"[:64].strip("-") if domain else base


def profile_from_plan(plan: SetupPlan, name: str) -> settings.Profile:
    """The settings-file profile for this plan (unchecked: ``settings.save`` validates it)."""
    tenant = plan.tenant
    signs_in = plan.method == "smtp-auth"
    mailbox = tenant.mailbox.strip() or None
    sender = tenant.sender.strip() or None
    if sender and mailbox and sender.lower() == mailbox.lower():
        sender = None
    oauth = plan.auth == "oauth" and signs_in
    auth = (plan.oauth.kind if oauth else "password") if signs_in else "none"
    host: str | None = None
    port: int | None = None
    if not signs_in:
        # The relay forwards to smtp.office365.com unless told otherwise: name the MX endpoint.
        host, port = _mx_host(plan), m365.MX_PORT
        host = None if host == m365.MX_HOST_PLACEHOLDER else host
    return settings.Profile(
        name=name,
        method=plan.method,
        domain=tenant.domain.strip(),
        user=mailbox if signs_in else None,
        sender=sender,
        auth=auth,
        tenant=(plan.oauth.tenant.strip() or None) if oauth else None,
        client_id=(plan.oauth.client_id.strip() or None) if oauth else None,
        authority=(plan.oauth.authority.strip() or None) if oauth else None,
        smtp_host=host,
        smtp_port=port if host else None,
        tls="starttls",
        relay_ip=tenant.public_ip.strip() or None,
        app_valid_until=(
            plan.oauth.secret_expires.isoformat()
            if oauth and plan.oauth.kind == "oauth-app" and plan.oauth.secret_expires
            else None
        ),
    )


def save_profile(plan: SetupPlan, path: Path, name: str) -> settings.Settings:
    """Add (or replace) the plan's profile in the settings file at ``path``, and the relay's table when the
    plan uses the relay; the first profile becomes the default. ``ValueError`` for a bad name,
    ``ConfigError`` subclasses (an unreadable or invalid file, an unwritable folder), each one sentence."""
    checked_name = validate.profile_name(name.strip())
    current = settings.load(path)
    current.set_profile(profile_from_plan(plan, checked_name))
    if current.default_profile is None:
        current.default_profile = checked_name
    if plan.relay.enabled:
        current.relay.profile = checked_name
        if plan.relay.listen.strip():
            current.relay.listen = plan.relay.listen.strip()
        current.relay.allow = list(plan.relay.allow)
        current.relay.senders = dict(plan.relay.senders)
        current.relay.bare_lf = "normalize" if plan.relay.mend_bare_lf else "refuse"
    settings.save(current, path)
    return current
