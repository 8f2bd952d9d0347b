"""What the summary and the report hand over: device settings, tenant changes, the outcome, the profile."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from relaywizard.core import checklist, handover, settings, trace
from relaywizard.core.errors import ConfigError
from relaywizard.core.plan import Capabilities, LocalRelay, SetupPlan, Tenant, UseCase
from relaywizard.diagnostics.checks import start_run
from relaywizard.diagnostics.model import CheckResult, Method, Report, Status, Target
from tests.diagnostics.fake_dns import FakeResolver, failure, m365_domain

D = "contoso.com"
MX = "contoso-com.mail.protection.outlook.com"
IP = "203.0.113.10"
SECRET = "Sup3r-Secret-pw!"


def plan_for(method: Method = "smtp-auth", **changes: Any) -> SetupPlan:
    tenant = Tenant(domain=D, mailbox="scanner@contoso.com", public_ip=IP if method != "smtp-auth" else "")
    for name in ("sender", "public_ip", "certificate_name", "mailbox"):
        if name in changes:
            setattr(tenant, name, changes.pop(name))
    auth = "none" if method != "smtp-auth" else "password"
    return SetupPlan(method=method, auth=changes.pop("auth", auth), tenant=tenant, **changes)


def dns_report(method: Method = "smtp-auth", relay_ip: str | None = None, **records: Any) -> Report:
    """A real run of the five DNS checks against a fake resolver (the password is in the target)."""
    target = Target(domain=D, method=method, relay_ip=relay_ip, user="scanner@contoso.com", secret=SECRET)
    run = start_run(target, "dns", resolver=FakeResolver(m365_domain(D, **records)))
    return asyncio.run(run.run())


def settings_of(plan: SetupPlan) -> dict[str, str]:
    return dict(handover.device_settings(plan))


def everything(plan: SetupPlan) -> str:
    data = handover.build(plan)
    return repr(data) + data.changes.dns_text()


# -- device settings ---------------------------------------------------------------------------------------


def test_smtp_auth_with_a_password() -> None:
    plan = plan_for(sender="office@contoso.com", profile="scanner", secret_stored=True)
    plan.keyring_backend = "Secret Service"
    rows = handover.device_settings(plan)
    assert [label for label, _ in rows] == [
        "Server (SMTP host)",
        "Port",
        "Security",
        "Authentication",
        "User name",
        "Password",
        "Sender (From)",
    ]
    values = dict(rows)
    assert values["Server (SMTP host)"] == "smtp.office365.com"
    assert values["Port"] == "587"
    assert values["Security"].startswith("STARTTLS")
    assert values["User name"] == "scanner@contoso.com"
    assert values["Password"] == "the one saved in the keyring profile “scanner” (Secret Service)"
    assert values["Sender (From)"] == "office@contoso.com"


def test_smtp_auth_password_not_saved_says_so() -> None:
    assert "not saved" in settings_of(plan_for())["Password"]


def test_smtp_auth_on_port_25_for_a_device_without_587() -> None:
    plan = plan_for(capabilities=Capabilities(port_587=False))
    assert settings_of(plan)["Port"] == "25"
    assert settings_of(plan)["Server (SMTP host)"] == "smtp.office365.com"


def test_smtp_auth_with_oauth() -> None:
    values = settings_of(plan_for(auth="oauth"))
    assert values["Authentication"] == "OAuth 2.0 (XOAUTH2)"
    assert "OAuth" in values["Password"]
    assert values["User name"] == "scanner@contoso.com"


def test_sender_defaults_to_the_mailbox() -> None:
    assert settings_of(plan_for())["Sender (From)"] == "scanner@contoso.com"


@pytest.mark.parametrize("method", ["direct-send", "connector"])
def test_mx_methods_use_the_mx_endpoint_on_port_25_without_sign_in(method: Method) -> None:
    values = settings_of(plan_for(method))
    assert values["Server (SMTP host)"] == MX
    assert values["Port"] == "25"
    assert values["Authentication"] == "None"
    assert "Password" not in values
    assert "User name" not in values


def test_connector_requires_starttls_direct_send_offers_it() -> None:
    assert settings_of(plan_for("connector"))["Security"].startswith("STARTTLS (the connector")
    assert "if the device offers it" in settings_of(plan_for("direct-send"))["Security"]
    plain = plan_for("direct-send", capabilities=Capabilities(tls12=False))
    assert settings_of(plain)["Security"] == "None"


def test_mx_endpoint_is_the_one_the_tests_found() -> None:
    """A domain of the new MX format: the device gets the host DNS really has."""
    new = "contoso-com.l-v1.mx.microsoft"
    plan = plan_for("connector", report=dns_report("connector", IP, mx=[f"0 {new}."]))
    assert settings_of(plan)["Server (SMTP host)"] == new


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("192.168.1.20:2525", "192.168.1.20", "2525"),
        ("192.168.1.20", "192.168.1.20", "2525"),
        ("0.0.0.0:25", "this computer's address on the office network", "25"),
        ("", "this computer's address on the office network", "2525"),
        ("relay.office.lan:2526", "relay.office.lan", "2526"),
    ],
)
def test_relay_settings_point_the_device_at_this_computer(listen: str, host: str, port: str) -> None:
    plan = plan_for(relay=LocalRelay(enabled=True, listen=listen, allow=["192.168.1.0/24"]), auth="oauth")
    values = settings_of(plan)
    assert values["Server (SMTP host)"] == host
    assert values["Port"] == port
    assert values["Security"].startswith("None")
    assert values["Authentication"].startswith("None")
    assert "Password" not in values


# -- the method ------------------------------------------------------------------------------------------


def test_recommended_method_takes_the_advisors_reasons() -> None:
    plan = plan_for(capabilities=Capabilities(tls12=True, can_authenticate=True, oauth=False, port_587=True))
    reasons = handover.method_reasons(plan)
    assert any("user name and password over TLS 1.2" in r for r in reasons)
    assert any("Basic authentication" in w for w in handover.method_warnings(plan))
    assert handover.method_title(plan) == "SMTP AUTH with a password"


def test_overridden_method_says_so_with_its_problems() -> None:
    plan = plan_for(
        "direct-send",
        method_overridden=True,
        capabilities=Capabilities(external_recipients=True, tls12=False, can_authenticate=False),
    )
    reasons = handover.method_reasons(plan)
    assert reasons[0].startswith("Chosen by the admin instead of the recommended")
    assert any("inside the organisation only" in r for r in reasons)
    assert any("outside" in w for w in handover.method_warnings(plan))


def test_validate_use_case_names_no_recommendation() -> None:
    plan = plan_for(use_case=UseCase.VALIDATE)
    assert handover.method_reasons(plan)[0].startswith("Existing settings were validated")


def test_relay_title() -> None:
    plan = plan_for(relay=LocalRelay(enabled=True), auth="oauth")
    assert handover.method_title(plan).startswith("The local relay on this computer")


# -- tenant changes: PowerShell ---------------------------------------------------------------------------


def test_smtp_auth_powershell_enables_it_for_the_mailbox() -> None:
    ps = handover.tenant_changes(plan_for()).powershell
    assert "Set-CASMailbox -Identity 'scanner@contoso.com' -SmtpClientAuthenticationDisabled $false" in ps
    assert "Add-RecipientPermission" not in ps


def test_smtp_auth_powershell_grants_send_as_for_another_sender() -> None:
    ps = handover.tenant_changes(plan_for(sender="office@contoso.com")).powershell
    assert "Set-CASMailbox" in ps
    assert (
        "Add-RecipientPermission -Identity 'office@contoso.com' -Trustee 'scanner@contoso.com' "
        "-AccessRights SendAs" in ps
    )
    assert ps.count("Connect-ExchangeOnline") == 1


def test_send_as_is_not_needed_for_the_same_address_in_other_case() -> None:
    ps = handover.tenant_changes(plan_for(sender="Scanner@Contoso.com")).powershell
    assert "Add-RecipientPermission" not in ps


def test_connector_powershell_by_ip_and_by_certificate() -> None:
    by_ip = handover.tenant_changes(plan_for("connector")).powershell
    assert f"-SenderIPAddresses {IP}" in by_ip
    assert "New-InboundConnector" in by_ip
    by_cert = handover.tenant_changes(
        plan_for("connector", public_ip="", certificate_name="relay.contoso.com")
    ).powershell
    assert "-TlsSenderCertificateName 'relay.contoso.com'" in by_cert


def test_connector_powershell_leaves_a_placeholder_for_an_address_it_cannot_take() -> None:
    ps = handover.tenant_changes(plan_for("connector", public_ip="2001:db8::1")).powershell
    assert "<office public IP>" in ps


def test_direct_send_powershell_checks_reject_direct_send() -> None:
    ps = handover.tenant_changes(plan_for("direct-send")).powershell
    assert "Get-OrganizationConfig | Format-List RejectDirectSend" in ps


# -- tenant changes: DNS ----------------------------------------------------------------------------------


def lines(changes: handover.TenantChanges) -> list[str]:
    return [change.line() for change in changes.dns]


def test_without_a_report_every_expected_record() -> None:
    changes = handover.tenant_changes(plan_for("connector"))
    assert not changes.tested
    assert lines(changes) == [
        f"{D} MX 0 {MX}",
        f'{D} TXT "v=spf1 ip4:{IP} include:spf.protection.outlook.com -all"',
        f"selector1._domainkey.{D} CNAME selector1-contoso-com._domainkey.<tenant>.onmicrosoft.com",
        f"selector2._domainkey.{D} CNAME selector2-contoso-com._domainkey.<tenant>.onmicrosoft.com",
        f'_dmarc.{D} TXT "v=DMARC1; p=quarantine"',
    ]
    assert all("not tested" in change.why for change in changes.dns)


def test_smtp_auth_spf_has_no_office_ip() -> None:
    changes = handover.tenant_changes(plan_for(public_ip=IP))
    assert f'{D} TXT "v=spf1 include:spf.protection.outlook.com -all"' in lines(changes)


def test_a_clean_report_leaves_nothing_to_change() -> None:
    changes = handover.tenant_changes(plan_for(report=dns_report()))
    assert changes.tested
    assert changes.dns == ()
    assert changes.dns_text().startswith("; Nothing to change")


def test_report_findings_are_the_records_to_change() -> None:
    report = dns_report(
        "connector",
        IP,
        spf=["v=spf1 mx -all"],
        dkim={},
        dmarc=["v=DMARC1; p=none; rua=mailto:dmarc@contoso.com"],
    )
    changes = handover.tenant_changes(plan_for("connector", report=report))
    spf = report.result("dns.spf")
    assert spf is not None
    assert changes.tested
    assert lines(changes) == [
        f'{D} TXT "{spf.data["suggested"]}"',
        f"selector1._domainkey.{D} CNAME selector1-contoso-com._domainkey.<tenant>.onmicrosoft.com",
        f"selector2._domainkey.{D} CNAME selector2-contoso-com._domainkey.<tenant>.onmicrosoft.com",
        f'_dmarc.{D} TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@contoso.com"',
    ]
    assert f"ip4:{IP}" in spf.data["suggested"]
    assert "include:spf.protection.outlook.com" in spf.data["suggested"]
    text = changes.dns_text()
    assert text.count("; DKIM") == 1  # the two selectors share one explanation


def test_other_mx_hosts_are_listed_for_deletion() -> None:
    report = dns_report("direct-send", IP, mx=[f"0 {MX}.", "10 mx.oldhost.net."])
    changes = handover.tenant_changes(plan_for("direct-send", report=report))
    mx = [c for c in changes.dns if c.record.type == "MX"]
    assert [(c.line(), c.delete) for c in mx] == [(f"{D} MX 10 mx.oldhost.net", True)]
    assert f"; DELETE {D} MX 10 mx.oldhost.net" in changes.dns_text()


def test_smtp_auth_does_not_ask_to_move_the_mx() -> None:
    report = dns_report(mx=["10 mx.oldhost.net."])
    assert not [c for c in handover.tenant_changes(plan_for(report=report)).dns if c.record.type == "MX"]


def test_a_failed_look_up_falls_back_to_the_expected_record() -> None:
    report = dns_report(dmarc=[])
    report.results = [r for r in report.results if r.id != "dns.dmarc"]
    report.results.append(
        CheckResult(
            "dns.dmarc",
            Status.FAIL,
            "DMARC record",
            "timed out",
            fix="retry",
            data={"error": {"kind": "timeout"}},
        )
    )
    changes = handover.tenant_changes(plan_for(report=report))
    assert not changes.tested
    assert [c.why.split(" ")[0] for c in changes.dns] == ["DMARC"]
    assert "not tested" in changes.dns[0].why


def test_autodiscover_only_when_the_tests_flag_it() -> None:
    assert "autodiscover" not in " ".join(lines(handover.tenant_changes(plan_for())))
    report = dns_report(autodiscover=None)
    changes = handover.tenant_changes(plan_for(report=report))
    assert lines(changes) == [f"autodiscover.{D} CNAME autodiscover.outlook.com"]


def test_no_domain_no_records() -> None:
    changes = handover.tenant_changes(SetupPlan())
    assert changes.dns == ()
    assert changes.powershell  # the block still has its placeholders


def test_dns_failure_result_is_recognised() -> None:
    records = m365_domain(D)
    records[(f"_dmarc.{D}", "TXT")] = failure("servfail", f"_dmarc.{D}", "TXT")
    run = start_run(Target(domain=D), "dns", resolver=FakeResolver(records))
    report = asyncio.run(run.run())
    changes = handover.tenant_changes(plan_for(report=report))
    assert [c.record.name for c in changes.dns] == [f"_dmarc.{D}"]


# -- the outcome ------------------------------------------------------------------------------------------


def test_outcome_not_tested() -> None:
    outcome = handover.outcome(plan_for())
    assert outcome.status is None
    assert outcome.text.startswith("Not tested")


def test_outcome_all_passed() -> None:
    report = dns_report()
    report.duration_ms = 2300
    outcome = handover.outcome(plan_for(report=report, test_message_id="<m1@contoso.com>"))
    assert outcome.status is Status.PASS
    assert outcome.text == "All 5 checks passed in 2.3 s. A test message was sent."
    assert outcome.message_id == "<m1@contoso.com>"


def test_outcome_counts_failures_and_warnings() -> None:
    report = dns_report(spf=[], dmarc=[])
    report.cancelled = True
    outcome = handover.outcome(plan_for(report=report))
    assert outcome.status is Status.FAIL
    assert outcome.text.startswith("1 failed, 1 warning, 3 passed of 5 checks")
    assert "cancelled" in outcome.text


# -- the trace and the checklist --------------------------------------------------------------------------


def test_no_test_message_no_trace() -> None:
    assert handover.build(plan_for()).trace is None


def test_the_trace_uses_the_send_time_the_data_check_recorded() -> None:
    message_id = trace.new_message_id("scanner@contoso.com", now=datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    data = CheckResult(
        "smtp.data",
        Status.PASS,
        "Test message (DATA)",
        "Accepted.",
        data={"message_id": message_id, "sent": "2026-03-01T09:00:02Z"},
    )
    plan = plan_for(report=Report(D, "smtp-auth", [data]), test_message_id=message_id)
    found = handover.build(plan).trace
    assert found is not None
    assert found.message_id == message_id
    assert found.sent == datetime(2026, 3, 1, 9, 0, 2, tzinfo=UTC)
    assert '-StartDate "2026-03-01T08:00:02Z" -EndDate "2026-03-01T10:00:02Z"' in found.powershell


def test_a_relay_test_message_is_traced_from_the_time_in_its_id() -> None:
    message_id = trace.new_message_id("scanner@contoso.com", now=datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    found = handover.build(plan_for(test_message_id=message_id)).trace
    assert found is not None
    assert found.sent == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_the_handover_holds_the_checklist_of_the_method() -> None:
    plan = plan_for("connector", report=dns_report("connector", IP))
    found = handover.build(plan).checklist
    assert found is not None
    assert found.method == handover.method_title(plan)
    assert {s.id: s.state for s in found.steps}["dns.mx"] is checklist.State.VERIFIED
    assert "connector" in [s.id for s in found.steps]
    relay = plan_for(relay=LocalRelay(True, "0.0.0.0:2525", ["192.168.1.20"]))
    steps = handover.build(relay, relay_running=True).checklist
    assert steps is not None
    assert steps.steps[-1].state is checklist.State.VERIFIED


# -- no secret, ever --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["smtp-auth", "direct-send", "connector"])
def test_no_secret_in_anything_handed_over(method: Method) -> None:
    report = dns_report(method, IP if method != "smtp-auth" else None, spf=[])
    plan = plan_for(method, report=report, profile="scanner", secret_stored=True)
    text = everything(plan)
    assert SECRET not in text
    assert "scanner" in text


# -- the profile ------------------------------------------------------------------------------------------


def test_suggested_profile_name() -> None:
    assert handover.suggested_profile_name(plan_for(profile="front-desk")) == "front-desk"
    assert handover.suggested_profile_name(plan_for()) == "scanner-contoso-com"
    assert handover.suggested_profile_name(SetupPlan(use_case=UseCase.VALIDATE)) == "device"


def test_save_smtp_auth_profile_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "config" / "settings.toml"
    plan = plan_for(sender="office@contoso.com")
    handover.save_profile(plan, path, "scanner")
    loaded = settings.load(path)
    profile = loaded.profile("scanner")
    assert (profile.method, profile.domain, profile.user, profile.sender, profile.auth, profile.tls) == (
        "smtp-auth",
        D,
        "scanner@contoso.com",
        "office@contoso.com",
        "password",
        "starttls",
    )
    assert profile.smtp_host is None
    assert loaded.default_profile == "scanner"
    assert loaded.relay.profile is None
    assert SECRET not in path.read_text()


def test_save_connector_profile_names_the_mx_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    handover.save_profile(plan_for("connector"), path, "copier")
    profile = settings.load(path).profile("copier")
    assert (profile.auth, profile.user, profile.smtp_host, profile.smtp_port, profile.relay_ip) == (
        "none",
        None,
        MX,
        25,
        IP,
    )


def test_save_relay_writes_the_relay_table(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    relay = LocalRelay(enabled=True, listen="192.168.1.20:2525", allow=["192.168.1.0/24", "10.0.0.7"])
    handover.save_profile(plan_for(relay=relay), path, "relay-upstream")
    loaded = settings.load(path)
    assert loaded.relay.profile == "relay-upstream"
    assert loaded.relay.listen == "192.168.1.20:2525"
    assert loaded.relay.allow == ["192.168.1.0/24", "10.0.0.7/32"]
    assert loaded.relay_profile() == loaded.profile("relay-upstream")


def test_second_profile_keeps_the_first_as_default(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    handover.save_profile(plan_for(), path, "first")
    handover.save_profile(plan_for("direct-send"), path, "second")
    loaded = settings.load(path)
    assert set(loaded.profiles) == {"first", "second"}
    assert loaded.default_profile == "first"


def test_bad_name_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="profile name"):
        handover.save_profile(plan_for(), tmp_path / "settings.toml", "no spaces please")


def test_invalid_settings_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("version = 1\n[profiles.x\n")
    with pytest.raises(ConfigError):
        handover.save_profile(plan_for(), path, "scanner")
    assert path.read_text() == "version = 1\n[profiles.x\n"
