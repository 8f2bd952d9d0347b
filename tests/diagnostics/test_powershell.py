"""The PowerShell an admin pastes: the real values filled in, quoted safely, read-only checks first."""

from __future__ import annotations

import pytest

from relaywizard.core import m365
from relaywizard.diagnostics import powershell

NEW = "New-InboundConnector -Name 'Office devices (relaywizard)' -ConnectorType OnPremises -SenderDomains *"


def commands(block: str) -> list[str]:
    """The lines PowerShell would run (comments are not commands)."""
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_quote_makes_a_literal_powershell_does_not_expand() -> None:
    assert powershell.quote("scanner@contoso.com") == "'scanner@contoso.com'"
    assert powershell.quote("o'brien@contoso.com") == "'o''brien@contoso.com'"
    assert powershell.quote("$env:USERNAME") == "'$env:USERNAME'"


def test_enable_smtp_auth_shows_both_settings_then_turns_it_on_for_the_mailbox() -> None:
    block = powershell.enable_smtp_auth("scanner@contoso.com")
    assert commands(block) == [
        "Get-TransportConfig | Format-List SmtpClientAuthenticationDisabled",
        "Get-CASMailbox -Identity 'scanner@contoso.com' | Format-List SmtpClientAuthenticationDisabled",
        "Set-CASMailbox -Identity 'scanner@contoso.com' -SmtpClientAuthenticationDisabled $false",
    ]
    assert "Connect-ExchangeOnline" in block
    # only the one mailbox: the organisation switch is not part of what gets pasted
    assert "Set-TransportConfig" not in block


def test_enable_smtp_auth_without_a_mailbox_leaves_a_placeholder() -> None:
    block = powershell.enable_smtp_auth(None)
    assert "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false" in block
    assert "Get-CASMailbox -Identity <mailbox> |" in block


def test_the_connector_for_the_office_ip() -> None:
    block = powershell.inbound_connector("203.0.113.10")
    assert commands(block) == [
        "Get-InboundConnector | Format-List Name,ConnectorType,SenderIPAddresses,TlsSenderCertificateName,"
        "RequireTls,Enabled",
        f"{NEW} -SenderIPAddresses 203.0.113.10 -RequireTls $true -RestrictDomainsToIPAddresses $true",
    ]
    assert "# Set-InboundConnector -Identity <connector name> -SenderIPAddresses 203.0.113.10" in block
    assert "Note:" not in block


def test_the_connector_takes_a_network_and_a_name() -> None:
    block = powershell.inbound_connector("203.0.113.0/28", name="Scanners Berlin")
    assert "-Name 'Scanners Berlin'" in block
    assert "-SenderIPAddresses 203.0.113.0/28 " in block


def test_the_connector_certificate_variant() -> None:
    block = powershell.inbound_connector(certificate_name="relay.contoso.com")
    new = [line for line in commands(block) if line.startswith("New-InboundConnector")]
    assert new == [f"{NEW} -TlsSenderCertificateName 'relay.contoso.com' -RequireTls $true"]
    assert "-SenderIPAddresses" not in block


def test_the_connector_without_an_ip_leaves_a_placeholder() -> None:
    block = powershell.inbound_connector(None)
    assert "-SenderIPAddresses <office public IP> " in block


@pytest.mark.parametrize("ip", ["192.168.1.20", "10.1.2.3", "172.20.0.5", "127.0.0.2"])
def test_a_local_address_gets_a_note_that_the_public_ip_is_needed(ip: str) -> None:
    block = powershell.inbound_connector(ip)
    assert f"# Note: {ip} is a local address" in block
    assert f"-SenderIPAddresses {ip} " in block  # still filled in: the admin decides


def test_a_carrier_grade_nat_address_suggests_the_certificate_connector() -> None:
    block = powershell.inbound_connector("100.72.3.4")
    assert "carrier-grade NAT" in block
    assert "-TlsSenderCertificateName" in block


@pytest.mark.parametrize("ip", ["2001:db8::1", "203.0.113.0/16", "not-an-ip", "203.0.113.300"])
def test_an_address_a_connector_cannot_take_is_refused(ip: str) -> None:
    with pytest.raises(ValueError, match=r"IPv4|not an IP"):
        powershell.inbound_connector(ip)


def test_reject_direct_send_only_checks_and_leaves_the_remedies_as_comments() -> None:
    block = powershell.reject_direct_send()
    assert commands(block) == ["Get-OrganizationConfig | Format-List RejectDirectSend"]
    assert "5.7.68" in block
    assert "#    Set-OrganizationConfig -RejectDirectSend $false" in block
    assert "#    New-InboundConnector" in block
    assert "-RestrictDomainsToIPAddresses $true" in block


def test_grant_send_as_fills_in_sender_and_mailbox() -> None:
    block = powershell.grant_send_as("scans@contoso.com", "scanner@contoso.com")
    assert commands(block) == [
        "Add-RecipientPermission -Identity 'scans@contoso.com' -Trustee 'scanner@contoso.com' "
        "-AccessRights SendAs"
    ]


def test_for_method_picks_the_block_of_the_method() -> None:
    assert "Set-CASMailbox" in powershell.for_method("smtp-auth", mailbox="a@contoso.com")
    assert "New-InboundConnector" in powershell.for_method("connector", ip="203.0.113.10")
    assert "-TlsSenderCertificateName" in powershell.for_method(
        "connector", certificate_name="relay.contoso.com"
    )
    assert commands(powershell.for_method("direct-send")) == [
        "Get-OrganizationConfig | Format-List RejectDirectSend"
    ]


def test_the_blocks_use_the_commands_of_the_one_source_of_truth() -> None:
    """A change in core.m365 reaches the pasted commands: the templates are filled in, not copied."""
    verb_of = {
        powershell.enable_smtp_auth("a@b.c"): m365.PS_ENABLE_SMTP_AUTH_MAILBOX,
        powershell.inbound_connector("203.0.113.10"): m365.PS_NEW_CONNECTOR_IP,
        powershell.inbound_connector(certificate_name="x.b.c"): m365.PS_NEW_CONNECTOR_CERT,
        powershell.grant_send_as("a@b.c", "d@b.c"): m365.PS_SEND_AS,
    }
    for block, template in verb_of.items():
        fixed = template.split("<")[0].strip()  # the part before the first placeholder
        assert fixed in block
