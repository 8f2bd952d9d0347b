"""What relaywizard relies on about Microsoft 365: endpoints, methods, limits, DNS, OAuth, dates.

One source of truth: when Microsoft changes something, it is a one-line change here. Each fact names
where it comes from (``source``), so the next person can check it again. Facts marked *unconfirmed* in
Microsoft's documentation are written so that code does not depend on them being exact.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import date
from typing import Literal

# -- where the facts come from -----------------------------------------------------------------------------

SRC_MFD = (
    "Microsoft Learn: How to set up a multifunction device or application to send email using Microsoft 365"
)
SRC_OAUTH = "Microsoft Learn: Authenticate an IMAP, POP or SMTP connection using OAuth"
SRC_FIX_DEVICES = "Microsoft Learn: Fix issues with printers, scanners and LOB applications"
SRC_NDR = "Microsoft Learn: mail-flow-best-practices/non-delivery-reports-in-exchange-online"
SRC_HVE = "Microsoft Learn: High volume email"
SRC_GRAPH = "Microsoft Learn: Microsoft Graph user: sendMail and throttling limits"
SRC_SET_TRANSPORTCONFIG = "Microsoft Learn: Set-TransportConfig"
SRC_SET_CASMAILBOX = "Microsoft Learn: Set-CASMailbox"
SRC_SET_ORGCONFIG = "Microsoft Learn: Set-OrganizationConfig"
SRC_NEW_INBOUNDCONNECTOR = "Microsoft Learn: New-InboundConnector"
SRC_SPF = "Microsoft Learn (Defender): Set up SPF to help prevent spoofing"
SRC_DKIM = "Microsoft Learn (Defender): Use DKIM to validate outbound email"
SRC_DMARC = "Microsoft Learn (Defender): Use DMARC to validate email"
SRC_BLOG_BASIC_AUTH = "Exchange Team blog: SMTP AUTH Basic authentication (2024-04, 2025-06, 2026-01)"
SRC_BLOG_DIRECT_SEND = (
    "Exchange Team blog: Introducing more control over Direct Send (RejectDirectSend, 2025)"
)

# -- endpoints ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    source: str


SMTP_AUTH_ENDPOINT = Endpoint("smtp.office365.com", 587, source=SRC_MFD)
SMTP_AUTH_ALTERNATIVE_PORT = 25  # also accepted by smtp.office365.com
SMTP_AUTH_UNSUPPORTED_PORTS = (465,)  # implicit TLS is not offered
SMTP_LEGACY_TLS_ENDPOINT = Endpoint("smtp-legacy.office365.com", 587, source=SRC_SET_TRANSPORTCONFIG)
HVE_ENDPOINT = Endpoint("smtp.hve.mx.microsoft", 587, source=SRC_HVE)
MX_PORT = 25
SMTP_AUTH_MIN_TLS = ssl.TLSVersion.TLSv1_2  # TLS 1.0/1.1 only through smtp-legacy (4.7.66 otherwise)
GRAPH_SEND_MAIL_URL = "https://graph.microsoft.com/v1.0/users/{upn}/sendMail"

# -- DNS ---------------------------------------------------------------------------------------------------

MX_SUFFIX = "mail.protection.outlook.com"
# Domains added since mid-2026 (and DNSSEC-enabled ones) get <domain-with-dashes>.<x>-v1.mx.microsoft;
# the exact format is unconfirmed, so any host under this suffix is accepted.
MX_SUFFIX_NEW = "mx.microsoft"
MX_SOURCE = SRC_MFD

SPF_INCLUDE = "spf.protection.outlook.com"
SPF_MAX_DNS_LOOKUPS = 10  # more is a permerror (RFC 7208)
SPF_LOOKUP_TERMS = ("include", "a", "mx", "ptr", "exists", "redirect")
SPF_SOURCE = SRC_SPF

DKIM_SELECTORS = ("selector1", "selector2")
DKIM_TARGET_SUFFIX = "onmicrosoft.com"
# Domains since May 2025: selector1-<domain-with-dashes>._domainkey.<tenant>.<x>-v1.dkim.mail.microsoft
DKIM_TARGET_SUFFIX_NEW = "dkim.mail.microsoft"
DKIM_SOURCE = SRC_DKIM

DMARC_POLICIES = ("none", "quarantine", "reject")  # "none" only monitors
DMARC_SOURCE = SRC_DMARC

AUTODISCOVER_TARGET = "autodiscover.outlook.com"
AUTODISCOVER_SOURCE = SRC_MFD


def domain_with_dashes(domain: str) -> str:
    """``contoso.com`` → ``contoso-com``: how Microsoft spells a domain inside its host names."""
    return domain.strip().rstrip(".").lower().replace(".", "-")


def mx_endpoint_for(domain: str) -> str:
    """The classic MX endpoint of an accepted domain: ``contoso-com.mail.protection.outlook.com``."""
    return f"{domain_with_dashes(domain)}.{MX_SUFFIX}"


def is_microsoft_mx(host: str) -> bool:
    """True for a host of either MX format: ``*.mail.protection.outlook.com`` or under mx.microsoft."""
    name = host.strip().rstrip(".").lower()
    return any(name.endswith("." + suffix) for suffix in (MX_SUFFIX, MX_SUFFIX_NEW))


def dkim_expected_cnames(domain: str, tenant: str) -> dict[str, str]:
    """Record name → CNAME target for selector1 and selector2 in the classic onmicrosoft.com format.

    ``tenant`` is the initial domain's first label (``contoso``) or the whole ``contoso.onmicrosoft.com``.
    """
    name = domain.strip().rstrip(".").lower()
    tenant_label = tenant.strip().rstrip(".").lower().removesuffix("." + DKIM_TARGET_SUFFIX)
    return {
        f"{selector}._domainkey.{name}": (
            f"{selector}-{domain_with_dashes(name)}._domainkey.{tenant_label}.{DKIM_TARGET_SUFFIX}"
        )
        for selector in DKIM_SELECTORS
    }


def is_microsoft_dkim_target(target: str, domain: str, selector: str) -> bool:
    """True when ``target`` is a Microsoft DKIM key host for this domain and selector (either format)."""
    name = target.strip().rstrip(".").lower()
    prefix = f"{selector}-{domain_with_dashes(domain)}._domainkey."
    return name.startswith(prefix) and any(
        name.endswith("." + suffix) for suffix in (DKIM_TARGET_SUFFIX, DKIM_TARGET_SUFFIX_NEW)
    )


# -- limits ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    value: int
    unit: str
    source: str
    approximate: bool = False


SMTP_AUTH_MESSAGES_PER_MINUTE = Limit(30, "messages per minute per mailbox", source=SRC_MFD)
SMTP_AUTH_CONNECTIONS_PER_MAILBOX = Limit(3, "concurrent connections per mailbox", source=SRC_MFD)
SMTP_AUTH_RECIPIENTS_PER_DAY = Limit(10_000, "recipients per day per mailbox", source=SRC_MFD)
CONNECTOR_RECIPIENTS_PER_DAY = Limit(10_000, "recipients per day", source=SRC_MFD, approximate=True)
# Exchange counts MB and KB in binary units.
MESSAGE_SIZE_DEFAULT = Limit(35 * 1024 * 1024, "bytes per message (default MaxSendSize)", source=SRC_NDR)
MESSAGE_SIZE_MAX = Limit(150 * 1024 * 1024, "bytes per message (highest MaxSendSize)", source=SRC_NDR)
HEADER_SIZE_MAX = Limit(256 * 1024, "bytes of message header", source=SRC_NDR)
GRAPH_REQUESTS_PER_10_MINUTES = Limit(10_000, "requests per 10 minutes per mailbox", source=SRC_GRAPH)
GRAPH_CONCURRENT_REQUESTS = Limit(4, "concurrent requests per mailbox", source=SRC_GRAPH)

# -- sending methods ---------------------------------------------------------------------------------------

MethodId = Literal["smtp-auth", "direct-send", "connector", "hve", "graph"]
TlsPolicy = Literal["required", "recommended", "optional"]
MX_HOST_PLACEHOLDER = "<domain-with-dashes>." + MX_SUFFIX


@dataclass(frozen=True)
class SendingMethod:
    id: MethodId
    name: str
    host: str  # MX_HOST_PLACEHOLDER: use mx_endpoint_for(domain)
    port: int
    tls: TlsPolicy
    tls_detail: str
    auth: str
    external_recipients: bool
    sender_rule: str
    needs: tuple[str, ...]
    limits: tuple[Limit, ...]
    limits_detail: str
    source: str


SMTP_AUTH = SendingMethod(
    id="smtp-auth",
    name="SMTP AUTH client submission",
    host=SMTP_AUTH_ENDPOINT.host,
    port=SMTP_AUTH_ENDPOINT.port,
    tls="required",
    tls_detail="STARTTLS with TLS 1.2 or later; port 465 (implicit TLS) is not supported",
    auth="a mailbox: OAuth 2.0 (XOAUTH2), or Basic only where the tenant still allows it",
    external_recipients=True,
    sender_rule="the authenticated mailbox, or one it has Send As permission on (else 5.7.60)",
    needs=("a licensed mailbox", "SMTP AUTH enabled for the organisation or the mailbox"),
    limits=(SMTP_AUTH_MESSAGES_PER_MINUTE, SMTP_AUTH_RECIPIENTS_PER_DAY, SMTP_AUTH_CONNECTIONS_PER_MAILBOX),
    limits_detail="30 messages a minute, 10,000 recipients a day, 3 concurrent connections per mailbox",
    source=SRC_MFD,
)
DIRECT_SEND = SendingMethod(
    id="direct-send",
    name="Direct Send",
    host=MX_HOST_PLACEHOLDER,
    port=MX_PORT,
    tls="optional",
    tls_detail="STARTTLS optional",
    auth="none",
    external_recipients=False,
    sender_rule="any address of an accepted domain",
    needs=("outbound port 25 open", "RejectDirectSend off"),
    limits=(),
    limits_detail="normal throttling",
    source=SRC_MFD,
)
CONNECTOR = SendingMethod(
    id="connector",
    name="Connector relay (SMTP relay)",
    host=MX_HOST_PLACEHOLDER,
    port=MX_PORT,
    tls="recommended",
    tls_detail="STARTTLS recommended (required with -RequireTls $true or a certificate connector)",
    auth="an inbound connector matching the sender's static public IP or its TLS certificate name",
    external_recipients=True,
    sender_rule="any address of a verified domain",
    needs=("a static, unshared public IP or a certificate", "an inbound connector of type OnPremises"),
    limits=(CONNECTOR_RECIPIENTS_PER_DAY,),
    limits_detail="about 10,000 recipients a day",
    source=SRC_MFD,
)
HVE = SendingMethod(
    id="hve",
    name="High Volume Email",
    host=HVE_ENDPOINT.host,
    port=HVE_ENDPOINT.port,
    tls="required",
    tls_detail="STARTTLS required",
    auth="an HVE account",
    external_recipients=False,  # internal only since June 2025
    sender_rule="the HVE account",
    needs=("an HVE account", "an HVE billing policy"),
    limits=(),
    limits_detail="no per-minute limit",
    source=SRC_HVE,
)
GRAPH = SendingMethod(
    id="graph",
    name="Microsoft Graph sendMail",
    host="graph.microsoft.com",
    port=443,
    tls="required",
    tls_detail="HTTPS",
    auth="an OAuth bearer token with Mail.Send (and Mail.ReadWrite for messages over about 3 MB)",
    external_recipients=True,
    sender_rule="the mailbox in the URL",
    needs=("an app registration", "admin consent"),
    limits=(GRAPH_REQUESTS_PER_10_MINUTES, GRAPH_CONCURRENT_REQUESTS),
    limits_detail="10,000 requests per 10 minutes per mailbox, 4 concurrent",
    source=SRC_GRAPH,
)
SENDING_METHODS: dict[MethodId, SendingMethod] = {
    m.id: m for m in (SMTP_AUTH, DIRECT_SEND, CONNECTOR, HVE, GRAPH)
}

# -- OAuth 2.0 ---------------------------------------------------------------------------------------------

SCOPE_SMTP_SEND = "https://outlook.office.com/SMTP.Send"
# Needed for a refresh token; MSAL adds it itself and refuses it (ValueError) when passed in scopes.
SCOPE_OFFLINE_ACCESS = "offline_access"
DELEGATED_SCOPES = (SCOPE_SMTP_SEND, SCOPE_OFFLINE_ACCESS)
SCOPE_APP_ONLY = "https://outlook.office365.com/.default"
APP_ONLY_PERMISSION = "SMTP.SendAsApp"  # Office 365 Exchange Online, application permission
GRAPH_PERMISSION = "Mail.Send"
GRAPH_LARGE_PERMISSION = "Mail.ReadWrite"  # a message over sendMail's 4 MB goes as a draft + attachments
SASL_MECHANISM = "XOAUTH2"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com/{tenant}"
OAUTH_SOURCE = SRC_OAUTH


def default_authority(tenant: str) -> str:
    """``https://login.microsoftonline.com/<tenant>``."""
    return DEFAULT_AUTHORITY.format(tenant=tenant.strip())


# -- tenant settings -------------------------------------------------------------------------------------

# Set-TransportConfig -SmtpClientAuthenticationDisabled is $true by default for tenants created since 2020.
SMTP_AUTH_OFF_BY_DEFAULT_FOR_TENANTS_SINCE = 2020
# Reported by users, unconfirmed in Microsoft's docs: XOAUTH2 submission also needs SMTP AUTH enabled.
OAUTH_NEEDS_SMTP_AUTH_ENABLED = True
CONNECTOR_IPV4_PREFIX_LENGTHS = range(24, 33)  # -SenderIPAddresses takes IPv4 /24 to /32
DIRECT_SEND_REJECTION = "550 5.7.68 TenantInboundAttribution; Direct Send not allowed"
TENANT_SETTINGS_SOURCE = SRC_SET_TRANSPORTCONFIG

# -- what an admin runs ------------------------------------------------------------------------------------

PS_ENABLE_SMTP_AUTH_MAILBOX = "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false"
PS_ENABLE_SMTP_AUTH_ORG = "Set-TransportConfig -SmtpClientAuthenticationDisabled $false"
PS_ALLOW_BASIC_AUTH_SMTP = "Set-AuthenticationPolicy -Identity <policy> -AllowBasicAuthSmtp"
PS_ALLOW_LEGACY_TLS = "Set-TransportConfig -AllowLegacyTLSClients $true"
PS_REJECT_DIRECT_SEND_OFF = "Set-OrganizationConfig -RejectDirectSend $false"
PS_NEW_CONNECTOR_IP = (
    "New-InboundConnector -Name <name> -ConnectorType OnPremises -SenderDomains * "
    "-SenderIPAddresses <public IP> -RequireTls $true"
)
PS_NEW_CONNECTOR_CERT = (
    "New-InboundConnector -Name <name> -ConnectorType OnPremises -SenderDomains * "
    "-TlsSenderCertificateName <domain> -RequireTls $true"
)
PS_SET_CONNECTOR_IP = "Set-InboundConnector -Identity <name> -SenderIPAddresses <public IP>"
PS_SEND_AS = (
    "Add-RecipientPermission -Identity <sender mailbox> -Trustee <signed-in mailbox> -AccessRights SendAs"
)
PS_NEW_SERVICE_PRINCIPAL = "New-ServicePrincipal -AppId <appId> -ObjectId <enterprise-app object id>"
PS_MAILBOX_PERMISSION = (
    "Add-MailboxPermission -Identity <mailbox> -User <service principal id> -AccessRights FullAccess"
)
PS_MAX_SEND_SIZE = "Set-Mailbox -Identity <mailbox> -MaxSendSize <size>"
ADMIN_CENTER_SMTP_AUTH = (
    "Microsoft 365 admin center > Users > Active users > <user> > Mail > Manage email apps"
    " > Authenticated SMTP"
)
ADMIN_CENTER_SECURITY_DEFAULTS = (
    "Microsoft Entra admin center > Identity > Overview > Properties > Manage security defaults"
)
RESTRICTED_ENTITIES = "Microsoft Defender portal > Email & collaboration > Review > Restricted entities"
DELIST_PORTAL = "https://sender.office.com"
ADMIN_CENTER_SOURCE = SRC_FIX_DEVICES

# -- Basic authentication for SMTP AUTH is going away ------------------------------------------------------


@dataclass(frozen=True)
class Milestone:
    when: date | None  # None: announced, not dated yet
    what: str
    source: str


BASIC_AUTH_OFF_BY_DEFAULT = date(2026, 12, 31)  # "from the end of December 2026", existing tenants
BASIC_AUTH_FINAL_REMOVAL_YEAR = 2027  # "a final removal date is due in 2027"
BASIC_AUTH_TIMELINE = (
    Milestone(date(2025, 9, 1), "first planned retirement (September 2025), postponed", SRC_BLOG_BASIC_AUTH),
    Milestone(
        date(2026, 3, 1), "second planned retirement (March–April 2026), postponed", SRC_BLOG_BASIC_AUTH
    ),
    Milestone(date(2026, 1, 1), "retirement put on hold (January 2026)", SRC_BLOG_BASIC_AUTH),
    Milestone(
        BASIC_AUTH_OFF_BY_DEFAULT,
        "off by default for existing tenants (admins can turn it back on); new tenants never have it",
        SRC_BLOG_BASIC_AUTH,
    ),
    Milestone(None, f"final removal, due in {BASIC_AUTH_FINAL_REMOVAL_YEAR}", SRC_BLOG_BASIC_AUTH),
)
BASIC_AUTH_REJECTION = "550 5.7.30 Basic authentication is not supported for Client Submission"
