"""The rollout checklist: each step of putting the chosen method in place, how to verify it, and its state.

A step is ✓ *verified here* only when a check relaywizard ran backs it (a passed sign-in proves SMTP AUTH is
on for the mailbox, a passed DATA proves a test message was accepted), ✗ *failed* when a check shows it
is not in place, and otherwise ! *to verify*: something relaywizard cannot see from here (a connector in
the tenant, the device's own settings), or a check that did not run or only warned. The states come from
the diagnostics ``Report`` in the ``SetupPlan`` and from the plan itself; nothing is assumed. No Qt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from relaywizard.core import m365, trace
from relaywizard.core.plan import SetupPlan
from relaywizard.diagnostics.model import CheckResult, Status

__all__ = ["STATE_TEXT", "Checklist", "State", "Step", "build"]


class State(StrEnum):
    VERIFIED = "verified"
    TO_VERIFY = "to-verify"
    FAILED = "failed"


#: How each state is written: a symbol and words (print-safe without colour).
STATE_TEXT = {
    State.VERIFIED: ("✓", "Verified here"),
    State.TO_VERIFY: ("!", "To verify"),
    State.FAILED: ("✗", "Failed"),
}


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    verify: str
    """How to verify it: a command or a place in an admin center."""
    state: State
    evidence: str
    """Why this state, one sentence: the check behind it, or why relaywizard cannot see it."""
    check: str | None = None
    """The id of the check the state comes from, if one does."""

    @property
    def mark(self) -> str:
        return STATE_TEXT[self.state][0]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "state": str(self.state),
            "verify": self.verify,
            "evidence": self.evidence,
            "check": self.check,
        }


@dataclass(frozen=True)
class Checklist:
    method: str
    steps: tuple[Step, ...]

    def count(self, state: State) -> int:
        return sum(step.state is state for step in self.steps)

    def summary(self) -> str:
        """``3 verified here, 5 to verify, 1 failed.``"""
        parts = [
            f"{self.count(State.VERIFIED)} verified here",
            f"{self.count(State.TO_VERIFY)} to verify",
            f"{self.count(State.FAILED)} failed",
        ]
        return ", ".join(parts) + "."

    def lines(self) -> list[str]:
        """The checklist as text: a mark and title per step, then its evidence and how to verify it."""
        out = [f"Rollout checklist ({self.method}): {self.summary()}"]
        for step in self.steps:
            out += [
                f"  {step.mark} {step.title}",
                f"      {STATE_TEXT[step.state][1]}: {step.evidence}",
                f"      How to verify: {step.verify}",
            ]
        return out

    def text(self) -> str:
        return "\n".join(self.lines())

    def to_json(self) -> list[dict[str, Any]]:
        return [step.to_json() for step in self.steps]


# -- reading the report ------------------------------------------------------------------------------------


def _result(plan: SetupPlan, check_id: str) -> CheckResult | None:
    return plan.report.result(check_id) if plan.report else None


def _from_check(
    plan: SetupPlan,
    check_id: str,
    not_run: str,
    *,
    passed: str | None = None,
    failed: Callable[[CheckResult], bool] = lambda _result: True,
) -> tuple[State, str, str | None]:
    """The state a check gives a step: pass ✓, fail ✗ (when ``failed`` says the failure is about this
    step), otherwise ! with what the check said or ``not_run``."""
    result = _result(plan, check_id)
    if result is None or result.status is Status.SKIP or "error" in result.data:
        return State.TO_VERIFY, not_run, None
    if result.status is Status.PASS:
        return State.VERIFIED, passed or f"The {check_id} check passed: {_sentence(result.summary)}", check_id
    if result.status is Status.FAIL and failed(result):
        return State.FAILED, f"The {check_id} check failed: {_sentence(result.summary)}", check_id
    verb = "warned" if result.status is Status.WARN else "failed"
    return State.TO_VERIFY, f"The {check_id} check {verb}: {_sentence(result.summary)}", check_id


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _address(plan: SetupPlan, check_id: str) -> str:
    result = _result(plan, check_id)
    found = result.data.get("address") if result and result.status is Status.PASS else None
    return str(found) if found else ""


def _in_domain(address: str, domain: str) -> bool:
    return bool(domain) and address.lower().endswith("@" + domain.lower())


def _domain(plan: SetupPlan) -> str:
    return plan.tenant.domain.strip().rstrip(".").lower()


# -- the steps ---------------------------------------------------------------------------------------------


def _domain_verified(plan: SetupPlan) -> Step:
    domain = _domain(plan) or "the domain"
    verify = (
        f"Microsoft 365 admin center > Settings > Domains: {domain} shows Healthy; or Get-AcceptedDomain in "
        "Exchange Online PowerShell lists it."
    )
    title = f"Domain {domain} verified in Microsoft 365"
    if plan.method == "smtp-auth":
        sender = _address(plan, "smtp.mail_from")
        data = _result(plan, "smtp.data")
        if data is not None and data.status is Status.PASS and _in_domain(sender, domain):
            evidence = f"Microsoft 365 accepted a test message from {sender}, an address of {domain}."
            return Step("domain", title, verify, State.VERIFIED, evidence, "smtp.data")
    else:
        recipient = _address(plan, "smtp.rcpt_to")
        if _in_domain(recipient, domain):
            evidence = (
                f"The domain's mail endpoint accepted the recipient {recipient}, an address of {domain}."
            )
            return Step("domain", title, verify, State.VERIFIED, evidence, "smtp.rcpt_to")
    evidence = "relaywizard cannot see the tenant's domains, and no test message proved it."
    return Step("domain", title, verify, State.TO_VERIFY, evidence)


def _dns(plan: SetupPlan) -> list[Step]:
    domain = _domain(plan) or "<domain>"
    lookups = f"relaywizard check {domain} --only dns"
    ip = plan.tenant.public_ip.strip()
    spf_terms = f"include:{m365.SPF_INCLUDE}" + (
        f" and ip4:{ip}" if ip and plan.method in ("direct-send", "connector") else ""
    )
    rows = [
        ("dns.mx", "MX record points to Microsoft 365", f"Resolve-DnsName {domain} -Type MX; or {lookups}"),
        (
            "dns.spf",
            f"SPF record names {spf_terms}",
            f"Resolve-DnsName {domain} -Type TXT; or {lookups}",
        ),
        (
            "dns.dkim",
            "DKIM selectors published and signing on",
            f"Resolve-DnsName selector1._domainkey.{domain} -Type CNAME; Microsoft Defender portal > Email & "
            "collaboration > Policies & rules > Threat policies > Email authentication settings > DKIM",
        ),
        ("dns.dmarc", "DMARC record published", f"Resolve-DnsName _dmarc.{domain} -Type TXT; or {lookups}"),
    ]
    steps = []
    for check_id, title, verify in rows:
        state, evidence, check = _from_check(plan, check_id, "The DNS checks did not run for it.")
        steps.append(Step(check_id, title, verify, state, evidence, check))
    return steps


def _smtp_auth_enabled(plan: SetupPlan) -> Step:
    mailbox = plan.tenant.mailbox.strip() or "<mailbox>"
    verify = (
        f"Get-CASMailbox -Identity {mailbox} | Format-List SmtpClientAuthenticationDisabled shows False (or "
        "empty, with Get-TransportConfig showing False); to turn it on: "
        + m365.PS_ENABLE_SMTP_AUTH_MAILBOX.replace("<mailbox>", mailbox)
    )
    state, evidence, check = _from_check(
        plan,
        "smtp.auth",
        "The sign-in was not tested.",
        passed=f"The sign-in as {mailbox} succeeded, which Microsoft 365 refuses while SMTP AUTH is off.",
        failed=_smtp_auth_is_off,
    )
    return Step("smtp-auth", f"SMTP AUTH enabled for {mailbox}", verify, state, evidence, check)


def _smtp_auth_is_off(result: CheckResult) -> bool:
    """A refused sign-in the SMTP AUTH switch is behind: the check's fix then turns it on (a 5.7.139 for
    security defaults, a wrong password or Conditional Access has other fixes)."""
    return result.code == "5.7.139" and "-SmtpClientAuthenticationDisabled $false" in result.fix


def _send_as(plan: SetupPlan) -> Step | None:
    sender, mailbox = plan.tenant.sender.strip(), plan.tenant.mailbox.strip()
    if not (sender and mailbox) or sender.lower() == mailbox.lower():
        return None
    verify = (
        f"Get-RecipientPermission -Identity {sender} -Trustee {mailbox} lists SendAs; to grant it: "
        + m365.PS_SEND_AS.replace("<sender mailbox>", sender).replace("<signed-in mailbox>", mailbox)
    )
    state, evidence, check = _from_check(
        plan,
        "smtp.data",
        f"No test message from {sender} was sent.",
        passed=f"Microsoft 365 accepted a test message from {sender} sent by {mailbox}.",
        failed=lambda r: r.code == "5.7.60",
    )
    return Step("send-as", f"{mailbox} may send as {sender}", verify, state, evidence, check)


def _direct_send_allowed(plan: SetupPlan) -> Step:
    verify = (
        "Get-OrganizationConfig | Format-List RejectDirectSend shows False; to allow it: "
        + m365.PS_REJECT_DIRECT_SEND_OFF
    )
    data, rcpt = _result(plan, "smtp.data"), _result(plan, "smtp.rcpt_to")
    title = "Direct Send allowed (RejectDirectSend off)"
    for result in (rcpt, data):
        if result is not None and result.status is Status.FAIL and result.code == "5.7.68":
            evidence = f"The {result.id} check failed: {_sentence(result.summary)}"
            return Step("direct-send", title, verify, State.FAILED, evidence, result.id)
    if data is not None and data.status is Status.PASS:
        evidence = "The domain's mail endpoint accepted a test message sent without signing in."
        return Step("direct-send", title, verify, State.VERIFIED, evidence, "smtp.data")
    evidence = "relaywizard cannot see the organisation's settings, and no test message proved it."
    return Step("direct-send", title, verify, State.TO_VERIFY, evidence)


def _connector(plan: SetupPlan) -> Step:
    ip, cert = plan.tenant.public_ip.strip(), plan.tenant.certificate_name.strip()
    matches = f"the office's IP {ip}" if ip else f"the certificate {cert}" if cert else "the office"
    verify = (
        "Exchange admin center > Mail flow > Connectors: an enabled connector from Your organization's email "
        "server to Office 365; or Get-InboundConnector | Format-List Name, ConnectorType, SenderIPAddresses, "
        "TlsSenderCertificateName, RequireTls, Enabled"
    )
    title = f"Inbound connector for {matches}"
    for check_id in ("smtp.rcpt_to", "smtp.data"):
        result = _result(plan, check_id)
        # Relay refused for a sender no connector matches: 5.7.64 (TenantAttribution), 5.7.54 (no relay).
        if result is not None and result.status is Status.FAIL and result.code in ("5.7.64", "5.7.54"):
            evidence = f"The {check_id} check failed: {_sentence(result.summary)}"
            return Step("connector", title, verify, State.FAILED, evidence, check_id)
    evidence = "relaywizard cannot see the tenant's connectors: check that it exists and matches."
    return Step("connector", title, verify, State.TO_VERIFY, evidence)


def _port_25(plan: SetupPlan) -> Step:
    state, evidence, check = _from_check(
        plan,
        "smtp.connect",
        "The connection was not tested.",
        passed="This computer reached the domain's mail endpoint"
        + ("." if plan.relay.enabled else "; the device's network must reach it too."),
    )
    domain = _domain(plan) or "<domain>"
    verify = f"relaywizard check {domain} --method {plan.method} --only smtp, run on the office network"
    return Step("port-25", f"Outbound port {m365.MX_PORT} open", verify, state, evidence, check)


def _credentials(plan: SetupPlan) -> Step:
    what = "OAuth sign-in" if plan.auth == "oauth" else "password"
    profile = plan.profile.strip()
    verify = (
        f"relaywizard check {_domain(plan) or '<domain>'} --user {plan.tenant.mailbox or '<mailbox>'} "
        f"--profile {profile or '<profile>'} signs in with it"
    )
    title = f"Credentials stored ({what})"
    auth = _result(plan, "smtp.auth")
    if auth is not None and auth.status is Status.FAIL and not _smtp_auth_is_off(auth):
        evidence = f"The smtp.auth check failed: {_sentence(auth.summary)}"
        return Step("credentials", title, verify, State.FAILED, evidence, "smtp.auth")
    if plan.secret_stored and profile:
        where = f" ({plan.keyring_backend})" if plan.keyring_backend else ""
        evidence = f"Saved in the keyring profile “{profile}”{where}"
        if auth is not None and auth.status is Status.PASS:
            return Step(
                "credentials", title, verify, State.VERIFIED, evidence + " and signed in.", "smtp.auth"
            )
        return Step("credentials", title, verify, State.VERIFIED, evidence + ".")
    evidence = f"relaywizard has not saved the {what}; the device or the relay must hold it."
    return Step("credentials", title, verify, State.TO_VERIFY, evidence)


def _device(plan: SetupPlan) -> Step:
    where = "the relay on this computer" if plan.relay.enabled else "Microsoft 365"
    verify = "The device's SMTP settings match Device settings; send a test from the device itself."
    evidence = f"relaywizard cannot see the device: its own test message must reach {where}."
    return Step("device", "Device configured", verify, State.TO_VERIFY, evidence)


def _test_delivered(plan: SetupPlan) -> Step:
    title = "Test message delivered"
    message_id = plan.test_message_id
    data = _result(plan, "smtp.data")
    if data is not None and data.status is Status.FAIL:
        evidence = f"The smtp.data check failed: {_sentence(data.summary)}"
        return Step(
            "test", title, "Run the tests again with a test message.", State.FAILED, evidence, "smtp.data"
        )
    if message_id is None and data is not None and data.status is Status.PASS:
        message_id = str(data.data.get("message_id") or "") or None
    if message_id is None:
        verify = "Run the tests with Send a test message (relaywizard check --send), then trace it."
        evidence = "No test message was sent."
        return Step("test", title, verify, State.TO_VERIFY, evidence)
    verify = trace.trace_for(message_id).powershell
    if data is not None and data.status is Status.PASS and data.data.get("message_id") == message_id:
        evidence = f"The server accepted the test message {message_id}; the trace shows its delivery."
        return Step("test", title, verify, State.VERIFIED, evidence, "smtp.data")
    if plan.relay.enabled:
        evidence = (
            f"The relay queued the test message {message_id}; its delivery log and the trace tell the rest."
        )
    else:
        evidence = f"The test message {message_id} was sent; the trace shows whether it was delivered."
    return Step("test", title, verify, State.TO_VERIFY, evidence)


def _relay_running(plan: SetupPlan, running: bool | None) -> Step:
    allowed = ", ".join(plan.relay.allow) or "no device yet"
    title = f"Relay running on this computer (allowed: {allowed})"
    verify = "The tray icon shows the relay running; relaywizard queue list shows nothing stuck."
    if running is True:
        return Step("relay", title, verify, State.VERIFIED, "The relay answered on its control channel.")
    if running is False:
        return Step("relay", title, verify, State.FAILED, "No relay is running on this computer.")
    data = _result(plan, "smtp.data")
    from_tests = data.data.get("message_id") if data is not None else None
    if plan.test_message_id and plan.test_message_id != from_tests:
        evidence = f"The relay took the test message {plan.test_message_id}."
        return Step("relay", title, verify, State.VERIFIED, evidence)
    evidence = "The relay was not tested: start it and send its test message."
    return Step("relay", title, verify, State.TO_VERIFY, evidence)


def build(plan: SetupPlan, *, relay_running: bool | None = None) -> Checklist:
    """The checklist for the plan's method (and the relay in front), with each step's state.

    ``relay_running`` is what the relay's control channel said, when the caller asked it (None: not asked).
    """
    from relaywizard.core import handover  # handover shows this checklist: imported late, no cycle

    steps: list[Step] = [_domain_verified(plan), *_dns(plan)]
    if plan.method == "smtp-auth":
        steps.append(_smtp_auth_enabled(plan))
        send_as = _send_as(plan)
        steps += [send_as] if send_as else []
        steps.append(_credentials(plan))
    elif plan.method == "direct-send":
        steps += [_direct_send_allowed(plan), _port_25(plan)]
    else:
        steps += [_connector(plan), _port_25(plan)]
    steps += [_device(plan), _test_delivered(plan)]
    if plan.relay.enabled:
        steps.append(_relay_running(plan, relay_running))
    return Checklist(handover.method_title(plan), tuple(steps))
