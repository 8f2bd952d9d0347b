"""The rollout checklist: the steps per method, and each state only from what was really checked."""

from __future__ import annotations

from typing import Any

import pytest

from relaywizard.core import checklist, trace
from relaywizard.core.checklist import State
from relaywizard.core.plan import LocalRelay, SetupPlan, Tenant
from relaywizard.diagnostics.model import CheckResult, Method, Report, Status

D = "contoso.com"
MAILBOX = "scanner@contoso.com"
IP = "203.0.113.10"
MESSAGE_ID = trace.new_message_id(MAILBOX)


def plan_for(method: Method = "smtp-auth", *results: CheckResult, **changes: Any) -> SetupPlan:
    tenant = Tenant(domain=D, mailbox=MAILBOX, public_ip=IP if method != "smtp-auth" else "")
    for name in ("sender", "certificate_name"):
        if name in changes:
            setattr(tenant, name, changes.pop(name))
    report = Report(domain=D, method=method, results=list(results)) if results else None
    auth = "password" if method == "smtp-auth" else "none"
    return SetupPlan(method=method, auth=auth, tenant=tenant, report=report, **changes)


def ok(check_id: str, summary: str = "Fine.", **data: Any) -> CheckResult:
    return CheckResult(check_id, Status.PASS, check_id, summary, data=data)


def bad(
    check_id: str, summary: str = "Broken.", code: str | None = None, fix: str = "Fix it."
) -> CheckResult:
    return CheckResult(check_id, Status.FAIL, check_id, summary, fix=fix, code=code)


def warn(check_id: str, summary: str = "Not quite.") -> CheckResult:
    return CheckResult(check_id, Status.WARN, check_id, summary, fix="Improve it.")


def skipped(check_id: str) -> CheckResult:
    return CheckResult(check_id, Status.SKIP, check_id, "Not run.")


def states(plan: SetupPlan, **kwargs: Any) -> dict[str, State]:
    return {step.id: step.state for step in checklist.build(plan, **kwargs).steps}


def step(plan: SetupPlan, step_id: str) -> checklist.Step:
    return next(s for s in checklist.build(plan).steps if s.id == step_id)


# -- the steps of each method ------------------------------------------------------------------------------

COMMON = ["domain", "dns.mx", "dns.spf", "dns.dkim", "dns.dmarc"]


@pytest.mark.parametrize(
    ("method", "changes", "expected"),
    [
        ("smtp-auth", {}, [*COMMON, "smtp-auth", "credentials", "device", "test"]),
        (
            "smtp-auth",
            {"sender": "office@contoso.com"},
            [*COMMON, "smtp-auth", "send-as", "credentials", "device", "test"],
        ),
        ("direct-send", {}, [*COMMON, "direct-send", "port-25", "device", "test"]),
        ("connector", {}, [*COMMON, "connector", "port-25", "device", "test"]),
        (
            "smtp-auth",
            {"relay": LocalRelay(True, "0.0.0.0:2525", ["192.168.1.0/24"])},
            [*COMMON, "smtp-auth", "credentials", "device", "test", "relay"],
        ),
    ],
)
def test_the_steps_of_each_method(method: Method, changes: dict[str, Any], expected: list[str]) -> None:
    found = checklist.build(plan_for(method, **changes))
    assert [s.id for s in found.steps] == expected
    assert all(s.verify and s.evidence and s.title for s in found.steps)


def test_without_tests_nothing_is_verified_or_failed() -> None:
    for method in ("smtp-auth", "direct-send", "connector"):
        assert set(states(plan_for(method)).values()) == {State.TO_VERIFY}


def test_each_step_names_how_to_verify_it() -> None:
    verify = {
        s.id: s.verify for s in checklist.build(plan_for("smtp-auth", sender="office@contoso.com")).steps
    }
    assert "Get-AcceptedDomain" in verify["domain"]
    assert "Resolve-DnsName contoso.com -Type MX" in verify["dns.mx"]
    assert (
        f"Set-CASMailbox -Identity {MAILBOX} -SmtpClientAuthenticationDisabled $false" in verify["smtp-auth"]
    )
    assert "Add-RecipientPermission -Identity office@contoso.com" in verify["send-as"]
    direct = {s.id: s.verify for s in checklist.build(plan_for("direct-send")).steps}
    assert "Get-OrganizationConfig | Format-List RejectDirectSend" in direct["direct-send"]
    connector = {s.id: s.verify for s in checklist.build(plan_for("connector")).steps}
    assert "Mail flow > Connectors" in connector["connector"]
    assert "Get-InboundConnector" in connector["connector"]


# -- states from the report --------------------------------------------------------------------------------


def test_dns_states_follow_their_checks() -> None:
    plan = plan_for(
        "smtp-auth",
        ok("dns.mx", "MX points to Microsoft 365."),
        bad("dns.spf", "No SPF record"),
        warn("dns.dmarc", "DMARC only monitors"),
        skipped("dns.dkim"),
    )
    found = states(plan)
    assert (found["dns.mx"], found["dns.spf"], found["dns.dmarc"], found["dns.dkim"]) == (
        State.VERIFIED,
        State.FAILED,
        State.TO_VERIFY,
        State.TO_VERIFY,
    )
    assert step(plan, "dns.mx").check == "dns.mx"
    assert step(plan, "dns.spf").evidence == "The dns.spf check failed: No SPF record."
    assert "warned: DMARC only monitors." in step(plan, "dns.dmarc").evidence


def test_a_failed_dns_look_up_is_not_a_verdict() -> None:
    failed_look_up = CheckResult(
        "dns.mx", Status.FAIL, "MX", "Timed out", fix="Retry.", data={"error": "timeout"}
    )
    assert states(plan_for("smtp-auth", failed_look_up))["dns.mx"] is State.TO_VERIFY


def test_smtp_auth_signed_in_verifies_the_switch_and_the_credentials() -> None:
    plan = plan_for("smtp-auth", ok("smtp.auth", "Signed in."), profile="scanner", secret_stored=True)
    found = states(plan)
    assert found["smtp-auth"] is State.VERIFIED
    assert found["credentials"] is State.VERIFIED
    assert step(plan, "credentials").evidence == "Saved in the keyring profile “scanner” and signed in."


def test_smtp_auth_turned_off_fails_the_switch_not_the_credentials() -> None:
    off = bad(
        "smtp.auth",
        "The server refused the sign-in: 535 5.7.139 SmtpClientAuthentication is disabled for the Mailbox",
        code="5.7.139",
        fix=f"Turn it on.\n\nSet-CASMailbox -Identity '{MAILBOX}' -SmtpClientAuthenticationDisabled $false",
    )
    found = states(plan_for("smtp-auth", off, profile="scanner", secret_stored=True))
    assert found["smtp-auth"] is State.FAILED
    assert found["credentials"] is State.VERIFIED


def test_a_wrong_password_fails_the_credentials_not_the_switch() -> None:
    wrong = bad(
        "smtp.auth", "535 5.7.139 Authentication unsuccessful", code="5.7.139", fix="Re-enter the password."
    )
    found = states(plan_for("smtp-auth", wrong, profile="scanner", secret_stored=True))
    assert found["smtp-auth"] is State.TO_VERIFY
    assert found["credentials"] is State.FAILED


def test_credentials_not_saved_are_to_verify() -> None:
    assert states(plan_for("smtp-auth"))["credentials"] is State.TO_VERIFY


def test_a_delivered_test_verifies_domain_send_as_and_test() -> None:
    plan = plan_for(
        "smtp-auth",
        ok("smtp.mail_from", address="office@contoso.com"),
        ok("smtp.data", message_id=MESSAGE_ID),
        sender="office@contoso.com",
        test_message_id=MESSAGE_ID,
    )
    found = states(plan)
    assert (found["domain"], found["send-as"], found["test"]) == (State.VERIFIED,) * 3
    test = step(plan, "test")
    assert MESSAGE_ID in test.evidence
    assert test.verify == trace.trace_for(MESSAGE_ID).powershell


def test_a_refused_send_as_fails_it() -> None:
    refused = bad("smtp.data", "550 5.7.60 SendAsDenied", code="5.7.60")
    found = states(plan_for("smtp-auth", refused, sender="office@contoso.com"))
    assert found["send-as"] is State.FAILED
    assert found["test"] is State.FAILED


def test_a_sender_outside_the_domain_does_not_verify_the_domain() -> None:
    plan = plan_for(
        "smtp-auth",
        ok("smtp.mail_from", address="x@elsewhere.example"),
        ok("smtp.data", message_id=MESSAGE_ID),
    )
    assert states(plan)["domain"] is State.TO_VERIFY


def test_direct_send_states() -> None:
    rejected = bad("smtp.rcpt_to", "550 5.7.68 Direct Send not allowed", code="5.7.68")
    assert states(plan_for("direct-send", ok("smtp.connect"), rejected))["direct-send"] is State.FAILED
    sent = plan_for(
        "direct-send",
        ok("smtp.connect"),
        ok("smtp.rcpt_to", address="alice@contoso.com"),
        ok("smtp.data", message_id=MESSAGE_ID),
    )
    found = states(sent)
    assert (found["direct-send"], found["port-25"], found["domain"]) == (State.VERIFIED,) * 3
    blocked = bad("smtp.connect", "Timed out connecting to port 25")
    assert states(plan_for("direct-send", blocked))["port-25"] is State.FAILED


def test_the_connector_stays_to_verify_even_when_mail_went_through() -> None:
    plan = plan_for(
        "connector", ok("smtp.rcpt_to", address="bob@example.org"), ok("smtp.data", message_id=MESSAGE_ID)
    )
    connector = step(plan, "connector")
    assert connector.state is State.TO_VERIFY
    assert "cannot see the tenant's connectors" in connector.evidence
    refused = bad("smtp.rcpt_to", "550 5.7.64 TenantAttribution; Relay Access Denied", code="5.7.64")
    assert states(plan_for("connector", refused))["connector"] is State.FAILED


def test_the_device_is_always_to_verify() -> None:
    plan = plan_for("smtp-auth", *(ok(c) for c in ("smtp.auth", "smtp.data")), test_message_id=MESSAGE_ID)
    assert states(plan)["device"] is State.TO_VERIFY


def test_relay_states() -> None:
    relay = LocalRelay(True, "0.0.0.0:2525", ["192.168.1.0/24"])
    assert states(plan_for("smtp-auth", relay=relay))["relay"] is State.TO_VERIFY
    assert states(plan_for("smtp-auth", relay=relay), relay_running=True)["relay"] is State.VERIFIED
    assert states(plan_for("smtp-auth", relay=relay), relay_running=False)["relay"] is State.FAILED
    # The relay page's test message (not the tests page's) proves the relay took it.
    through_relay = plan_for("smtp-auth", relay=relay, test_message_id=MESSAGE_ID)
    found = states(through_relay)
    assert found["relay"] is State.VERIFIED
    assert found["test"] is State.TO_VERIFY  # queued by the relay: delivery is for the trace to show
    assert "192.168.1.0/24" in step(through_relay, "relay").title
    assert "The relay queued the test message" in step(through_relay, "test").evidence
    assert "The relay" not in step(plan_for("smtp-auth", test_message_id=MESSAGE_ID), "test").evidence


# -- the whole list ----------------------------------------------------------------------------------------


def test_text_and_json() -> None:
    plan = plan_for("smtp-auth", ok("dns.mx"), bad("dns.spf"), profile="scanner", secret_stored=True)
    found = checklist.build(plan)
    assert found.summary() == "2 verified here, 6 to verify, 1 failed."
    text = found.text()
    assert text.splitlines()[0] == f"Rollout checklist (SMTP AUTH with a password): {found.summary()}"
    assert "  ✓ MX record points to Microsoft 365" in text
    assert "  ✗ SPF record names include:spf.protection.outlook.com" in text
    assert "  ! Device configured" in text
    assert "How to verify: Resolve-DnsName contoso.com -Type MX" in text
    rows = found.to_json()
    assert rows[1] == {
        "id": "dns.mx",
        "title": "MX record points to Microsoft 365",
        "state": "verified",
        "verify": found.steps[1].verify,
        "evidence": "The dns.mx check passed: Fine.",
        "check": "dns.mx",
    }
