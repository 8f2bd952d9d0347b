"""The app registration helper's text: the facts in it, the values filled in, and PowerShell that parses."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from relaywizard.core import app_registration as reg
from relaywizard.core.validate import InvalidValue

TENANT = "contoso.onmicrosoft.com"
CLIENT = "0f1e2d3c-4b5a-6978-8a9b-acbdcedf0011"
OBJECT = "aabbccdd-eeff-0011-2233-445566778899"
MAILBOX = "scanner@contoso.com"


def test_app_only_steps_name_the_permission_consent_and_the_object_id_trap() -> None:
    text = reg.text("oauth-app", TENANT, CLIENT, MAILBOX, OBJECT)
    assert "Office 365 Exchange Online" in text
    assert "SMTP.SendAsApp" in text
    assert "Grant admin consent" in text
    assert (
        "WARNING: Use the Object ID shown under Enterprise applications, not the one under App registrations"
        in text
    )
    assert "535 5.7.3" in text
    assert f"New-ServicePrincipal -AppId '{CLIENT}' -ObjectId '{OBJECT}'" in text
    assert f"Add-MailboxPermission -Identity '{MAILBOX}' -User $sp.Identity -AccessRights FullAccess" in text
    assert '-Role "Application SMTP.SendAsApp"' in text
    assert "New-ManagementScope" in text
    assert "<object id" not in text
    assert "<application" not in text
    assert "<mailbox>" not in text


def test_unknown_values_stay_visible_placeholders() -> None:
    script = reg.powershell("oauth-app")
    assert f"-AppId '{reg.CLIENT_ID_PLACEHOLDER}'" in script
    assert f"-ObjectId '{reg.OBJECT_ID_PLACEHOLDER}'" in script
    assert "-Identity '<mailbox>'" in script


def test_delegated_steps_need_smtp_send_public_client_flows_and_smtp_auth() -> None:
    text = reg.text("oauth-delegated", TENANT, CLIENT, MAILBOX)
    assert "SMTP.Send" in text
    assert "SMTP.SendAsApp" not in text
    assert "Allow public client flows" in text
    assert f"Set-CASMailbox -Identity '{MAILBOX}' -SmtpClientAuthenticationDisabled $false" in text
    assert "New-ServicePrincipal" not in text


@pytest.mark.parametrize("kind", ["oauth-app", "oauth-delegated"])
def test_powershell_is_valid_looking(kind: reg.RegistrationKind) -> None:
    script = reg.powershell(kind, TENANT, CLIENT, "o'brien@contoso.com", OBJECT)
    assert script.count("Connect-ExchangeOnline") == 1
    assert script.startswith("# Exchange Online PowerShell")
    for line in script.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert re.match(r"^(\$\w+ = )?[A-Z][a-z]+-[A-Za-z]+( |$)", line), line  # Verb-Noun cmdlets
        quotes = line.replace("''", "")
        assert quotes.count("'") % 2 == 0, line  # every single-quoted string closed
        assert line.count('"') % 2 == 0, line
    assert "'o''brien@contoso.com'" in script  # a quote inside a PowerShell string is doubled
    if kind == "oauth-app":  # RBAC is the alternative: commented out, not run after FullAccess
        assert "# New-ManagementRoleAssignment" in script


def test_the_exchange_block_for_the_report_has_no_connect_and_warns() -> None:
    block = reg.exchange_block(CLIENT, MAILBOX, OBJECT)
    assert "Connect-ExchangeOnline" not in block
    assert "Set-CASMailbox" not in block
    assert "Enterprise applications" in block
    assert f"-ObjectId '{OBJECT}'" in block


def test_guid_and_tenant_validation() -> None:
    assert reg.client_id(" {0F1E2D3C-4B5A-6978-8A9B-ACBDCEDF0011} ") == CLIENT
    assert reg.client_id("0f1e2d3c4b5a69788a9bacbdcedf0011") == CLIENT
    with pytest.raises(InvalidValue) as caught:
        reg.client_id("0f1e2d3c 4b5a 6978 8a9b acbdcedf0011")
    assert caught.value.suggestion == CLIENT
    with pytest.raises(InvalidValue, match="application \\(client\\) id"):
        reg.client_id("my-app")
    assert reg.tenant("Contoso.onmicrosoft.com") == TENANT
    assert reg.tenant(CLIENT.upper()) == CLIENT
    assert reg.tenant("organizations") == "organizations"
    with pytest.raises(InvalidValue, match="real tenant"):
        reg.tenant("common", app_only=True)
    with pytest.raises(InvalidValue, match="tenant id"):
        reg.tenant("not a tenant")


def test_a_refused_app_token_is_explained_by_the_usual_mistakes() -> None:
    text = reg.explain_refused_token("oauth-app", MAILBOX)
    assert "Enterprise application" in text
    assert "FullAccess" in text
    assert "consent" in text
    assert text.count(". ") == 0  # one sentence
    assert "signed in must be" in reg.explain_refused_token("oauth-delegated", MAILBOX)


def test_an_app_only_plan_carries_its_registration_into_the_profile_and_the_tenant_changes() -> None:
    from relaywizard.core import handover
    from relaywizard.core.plan import OAuthPlan, SetupPlan

    plan = SetupPlan(method="smtp-auth", auth="oauth")
    plan.tenant.domain, plan.tenant.mailbox = "contoso.com", MAILBOX
    plan.oauth = OAuthPlan(kind="oauth-app", tenant=TENANT, client_id=CLIENT, object_id=OBJECT)
    profile = handover.profile_from_plan(plan, "scanner")
    assert (profile.auth, profile.tenant, profile.client_id, profile.authority) == (
        "oauth-app",
        TENANT,
        CLIENT,
        None,
    )
    script = handover.tenant_changes(plan).powershell
    assert f"New-ServicePrincipal -AppId '{CLIENT}' -ObjectId '{OBJECT}'" in script
    assert script.count("Connect-ExchangeOnline") == 1
    rows = dict(handover.device_settings(plan))
    assert rows["Application (client) ID"] == CLIENT
    assert rows["Tenant"] == TENANT

    assert profile.app_valid_until is None
    plan.oauth.secret_expires = dt.date(2027, 6, 30)  # carried so the relay warns ahead of it
    assert handover.profile_from_plan(plan, "scanner").app_valid_until == "2027-06-30"

    plan.oauth = OAuthPlan(kind="oauth-delegated", tenant=TENANT, client_id=CLIENT)
    assert handover.profile_from_plan(plan, "scanner").auth == "oauth-delegated"
    assert "New-ServicePrincipal" not in handover.tenant_changes(plan).powershell
