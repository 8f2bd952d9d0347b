"""The Microsoft 365 facts: the values the product relies on, and the tiny helpers around them."""

from __future__ import annotations

import dataclasses
import ssl
from datetime import date

import pytest

from relaywizard.core import m365


def test_every_fact_names_its_source() -> None:
    facts = [v for v in vars(m365).values() if dataclasses.is_dataclass(v) and not isinstance(v, type)]
    facts += list(m365.BASIC_AUTH_TIMELINE)
    assert len(facts) > 15
    for fact in facts:
        source = getattr(fact, "source", None)
        assert isinstance(source, str), fact
        assert source.strip(), fact
    # plain string facts are grouped, each group naming where it comes from
    groups = [name for name in vars(m365) if name.endswith("_SOURCE")]
    assert {"MX_SOURCE", "SPF_SOURCE", "DKIM_SOURCE", "OAUTH_SOURCE"} <= set(groups)
    assert all(getattr(m365, name).startswith(("Microsoft Learn", "Exchange Team blog")) for name in groups)


def test_endpoints() -> None:
    assert (m365.SMTP_AUTH_ENDPOINT.host, m365.SMTP_AUTH_ENDPOINT.port) == ("smtp.office365.com", 587)
    assert m365.SMTP_LEGACY_TLS_ENDPOINT.host == "smtp-legacy.office365.com"
    assert (m365.HVE_ENDPOINT.host, m365.HVE_ENDPOINT.port) == ("smtp.hve.mx.microsoft", 587)
    assert m365.GRAPH_SEND_MAIL_URL.format(upn="a@contoso.com") == (
        "https://graph.microsoft.com/v1.0/users/a@contoso.com/sendMail"
    )
    assert 465 in m365.SMTP_AUTH_UNSUPPORTED_PORTS
    assert m365.SMTP_AUTH_MIN_TLS is ssl.TLSVersion.TLSv1_2


def test_sending_methods() -> None:
    methods = m365.SENDING_METHODS
    assert set(methods) == {"smtp-auth", "direct-send", "connector", "hve", "graph"}
    smtp_auth, direct, connector = methods["smtp-auth"], methods["direct-send"], methods["connector"]
    assert (smtp_auth.host, smtp_auth.port, smtp_auth.tls) == ("smtp.office365.com", 587, "required")
    assert (direct.port, direct.auth, direct.external_recipients) == (25, "none", False)
    assert (connector.port, connector.external_recipients) == (25, True)
    assert direct.host == connector.host == m365.MX_HOST_PLACEHOLDER
    assert methods["hve"].external_recipients is False
    assert "5.7.60" in smtp_auth.sender_rule
    assert m365.SMTP_AUTH_MESSAGES_PER_MINUTE in smtp_auth.limits
    for method in methods.values():
        assert method.needs
        assert method.limits_detail
        assert method.source


def test_limits() -> None:
    assert m365.SMTP_AUTH_MESSAGES_PER_MINUTE.value == 30
    assert m365.SMTP_AUTH_CONNECTIONS_PER_MAILBOX.value == 3
    assert m365.SMTP_AUTH_RECIPIENTS_PER_DAY.value == 10_000
    assert m365.MESSAGE_SIZE_DEFAULT.value == 35 * 1024 * 1024
    assert m365.MESSAGE_SIZE_MAX.value == 150 * 1024 * 1024
    assert m365.HEADER_SIZE_MAX.value == 256 * 1024
    assert m365.CONNECTOR_RECIPIENTS_PER_DAY.approximate


@pytest.mark.parametrize(
    ("domain", "endpoint"),
    [
        ("contoso.com", "contoso-com.mail.protection.outlook.com"),
        ("Contoso.COM.", "contoso-com.mail.protection.outlook.com"),
        ("sub.my-firm.co.uk", "sub-my-firm-co-uk.mail.protection.outlook.com"),
    ],
)
def test_mx_endpoint_for(domain: str, endpoint: str) -> None:
    assert m365.mx_endpoint_for(domain) == endpoint


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("contoso-com.mail.protection.outlook.com", True),
        ("CONTOSO-COM.mail.protection.outlook.com.", True),
        ("contoso-com.r-v1.mx.microsoft", True),  # the new format, whose exact shape is unconfirmed
        ("anything.mx.microsoft", True),
        ("mail.protection.outlook.com", False),
        ("contoso-com.mail.protection.outlook.com.evil.example", False),
        ("mx.microsoft", False),
        ("mx1.contoso.com", False),
    ],
)
def test_is_microsoft_mx(host: str, expected: bool) -> None:
    assert m365.is_microsoft_mx(host) is expected


def test_dkim_expected_cnames() -> None:
    expected = {
        "selector1._domainkey.contoso.com": "selector1-contoso-com._domainkey.contosoltd.onmicrosoft.com",
        "selector2._domainkey.contoso.com": "selector2-contoso-com._domainkey.contosoltd.onmicrosoft.com",
    }
    assert m365.dkim_expected_cnames("contoso.com", "contosoltd") == expected
    assert m365.dkim_expected_cnames("Contoso.com.", "contosoltd.onmicrosoft.com") == expected


@pytest.mark.parametrize(
    ("target", "selector", "expected"),
    [
        ("selector1-contoso-com._domainkey.contosoltd.onmicrosoft.com", "selector1", True),
        ("selector2-contoso-com._domainkey.contosoltd.onmicrosoft.com.", "selector2", True),
        ("selector1-contoso-com._domainkey.contosoltd.r-v1.dkim.mail.microsoft", "selector1", True),
        ("selector1-contoso-com._domainkey.contosoltd.onmicrosoft.com", "selector2", False),
        ("selector1-fabrikam-com._domainkey.contosoltd.onmicrosoft.com", "selector1", False),
        ("selector1-contoso-com._domainkey.example.net", "selector1", False),
    ],
)
def test_is_microsoft_dkim_target(target: str, selector: str, expected: bool) -> None:
    assert m365.is_microsoft_dkim_target(target, "contoso.com", selector) is expected


def test_dns_constants() -> None:
    assert m365.SPF_INCLUDE == "spf.protection.outlook.com"
    assert m365.SPF_MAX_DNS_LOOKUPS == 10
    assert set(m365.SPF_LOOKUP_TERMS) == {"include", "a", "mx", "ptr", "exists", "redirect"}
    assert m365.DKIM_SELECTORS == ("selector1", "selector2")
    assert m365.AUTODISCOVER_TARGET == "autodiscover.outlook.com"
    assert m365.DMARC_POLICIES == ("none", "quarantine", "reject")


def test_oauth() -> None:
    assert m365.SCOPE_SMTP_SEND == "https://outlook.office.com/SMTP.Send"
    assert m365.DELEGATED_SCOPES == ("https://outlook.office.com/SMTP.Send", "offline_access")
    assert m365.SCOPE_APP_ONLY == "https://outlook.office365.com/.default"
    assert m365.default_authority("contoso.onmicrosoft.com") == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    )


def test_basic_auth_timeline() -> None:
    assert date(2026, 12, 31) == m365.BASIC_AUTH_OFF_BY_DEFAULT
    assert m365.BASIC_AUTH_FINAL_REMOVAL_YEAR == 2027
    assert m365.BASIC_AUTH_TIMELINE[-1].when is None
    assert m365.BASIC_AUTH_REJECTION.startswith("550 5.7.30 ")


def test_admin_commands_name_the_real_cmdlets() -> None:
    assert m365.PS_ENABLE_SMTP_AUTH_MAILBOX == (
        "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false"
    )
    assert "Authenticated SMTP" in m365.ADMIN_CENTER_SMTP_AUTH
    assert "-ConnectorType OnPremises" in m365.PS_NEW_CONNECTOR_IP
