"""PowerShell a tenant admin pastes into Exchange Online PowerShell, filled in with the real values.

A fix that says "run Set-CASMailbox for the mailbox" leaves the admin to look up syntax and get the
quoting right; a block with the mailbox, the office's IP or the connector name already in place is what
actually gets run. Every block starts with the read-only command that shows the current state, then the
change, with ``#`` comments saying when to run it. The command templates come from ``core.m365`` (one
source of Microsoft 365 truth); this module only fills them in and explains them.

Values are single-quoted for PowerShell (``'O''Brien@contoso.com'``), so nothing in them is expanded;
a value the caller does not know stays a ``<placeholder>`` for the admin to replace.
"""

from __future__ import annotations

import ipaddress

from relaywizard.core import m365
from relaywizard.diagnostics.model import Method

__all__ = [
    "DEFAULT_CONNECTOR_NAME",
    "enable_smtp_auth",
    "for_method",
    "grant_send_as",
    "inbound_connector",
    "quote",
    "reject_direct_send",
]

DEFAULT_CONNECTOR_NAME = "Office devices (relaywizard)"

CONNECT_LINE = (
    "# In Exchange Online PowerShell (first: Connect-ExchangeOnline -UserPrincipalName <admin address>)"
)
_GET_ORG_SMTP_AUTH = "Get-TransportConfig | Format-List SmtpClientAuthenticationDisabled"
_GET_MAILBOX_SMTP_AUTH = "Get-CASMailbox -Identity {mailbox} | Format-List SmtpClientAuthenticationDisabled"
_GET_REJECT_DIRECT_SEND = "Get-OrganizationConfig | Format-List RejectDirectSend"
_GET_CONNECTORS = (
    "Get-InboundConnector | Format-List Name,ConnectorType,SenderIPAddresses,TlsSenderCertificateName,"
    "RequireTls,Enabled"
)
_RESTRICT_TO_IP = "-RestrictDomainsToIPAddresses $true"
_IP_PLACEHOLDER = "<office public IP>"
#: Addresses Microsoft 365 can never see as the sender: the LAN's (RFC 1918), this machine's, link-local.
_LOCAL_NETWORKS = tuple(
    ipaddress.IPv4Network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16")
)
#: Carrier-grade NAT (RFC 6598): the ISP's shared address space, so the office has no public IP of its own.
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")


def quote(value: str) -> str:
    """A PowerShell single-quoted string literal: nothing inside is expanded, ``'`` is doubled."""
    return "'" + value.replace("'", "''") + "'"


def _value(value: str | None, placeholder: str) -> str:
    return quote(value.strip()) if value and value.strip() else placeholder


def enable_smtp_auth(mailbox: str | None) -> str:
    """Turn authenticated SMTP on for one mailbox (5.7.139), after showing both settings that decide it.

    The mailbox setting wins over the organisation's; ``$null`` (shown empty) follows the organisation.
    Turning it on for one mailbox keeps the rest of the tenant closed.
    """
    mbx = _value(mailbox, "<mailbox>")
    return "\n".join(
        [
            CONNECT_LINE,
            "# 1. The settings now (True = SMTP AUTH off, False = on; empty for the mailbox = follows the "
            "organisation):",
            _GET_ORG_SMTP_AUTH,
            _GET_MAILBOX_SMTP_AUTH.format(mailbox=mbx),
            "# 2. Turn SMTP AUTH on for this mailbox only:",
            m365.PS_ENABLE_SMTP_AUTH_MAILBOX.replace("<mailbox>", mbx),
        ]
    )


def _connector_ip(ip: str) -> str:
    """The office's address as -SenderIPAddresses takes it (IPv4, /24 to /32); ValueError otherwise."""
    try:
        network = ipaddress.ip_network(ip.strip(), strict=False)
    except ValueError:
        raise ValueError(f"'{ip}' is not an IP address or network") from None
    if network.version != 4 or network.prefixlen not in m365.CONNECTOR_IPV4_PREFIX_LENGTHS:
        lowest = m365.CONNECTOR_IPV4_PREFIX_LENGTHS[0]
        raise ValueError(f"a connector takes an IPv4 address or network from /{lowest} to /32, not '{ip}'")
    return str(network.network_address) if network.prefixlen == 32 else str(network)


def inbound_connector(
    ip: str | None = None,
    *,
    certificate_name: str | None = None,
    name: str = DEFAULT_CONNECTOR_NAME,
) -> str:
    """The inbound connector that lets the office relay (connector relay), by IP or by certificate.

    With ``certificate_name`` the connector matches the TLS certificate the office's relay presents
    (for offices without a static IP); otherwise it matches the office's public IP, restricted to it so
    nobody else can send as the organisation's domains. ``ip`` may be None (a placeholder is left).
    ValueError for an IP a connector cannot take (IPv6, a prefix wider than /24).
    """
    lines = [
        CONNECT_LINE,
        "# 1. Connectors that exist already (update one instead of adding a second):",
        _GET_CONNECTORS,
    ]
    connector = quote(name)
    if certificate_name:
        command = m365.PS_NEW_CONNECTOR_CERT.replace("<name>", connector).replace(
            "<domain>", quote(certificate_name.strip())
        )
        lines += [
            "# 2. A connector that accepts mail from a relay presenting a certificate for this name "
            "(over STARTTLS):",
            command,
        ]
        return "\n".join(lines)
    address = _connector_ip(ip) if ip and ip.strip() else None
    shown = address or _IP_PLACEHOLDER
    lines += _address_notes(address)
    command = m365.PS_NEW_CONNECTOR_IP.replace("<name>", connector).replace("<public IP>", shown)
    lines += [
        f"# 2. A connector for the office's public IP {shown}, refusing your domains from any other address:",
        f"{command} {_RESTRICT_TO_IP}",
        "# Or, if a connector for the office exists already, give it the current address:",
        "# " + m365.PS_SET_CONNECTOR_IP.replace("<name>", "<connector name>").replace("<public IP>", shown),
    ]
    return "\n".join(lines)


def _address_notes(address: str | None) -> list[str]:
    """Comments for an address Microsoft 365 will never see as the office's (a LAN or CGNAT address)."""
    if address is None:
        return []
    network = ipaddress.IPv4Network(address)  # _connector_ip took IPv4 only
    if any(network.subnet_of(local) for local in _LOCAL_NETWORKS):
        return [
            f"# Note: {address} is a local address. Microsoft 365 sees the office's public IP (the router's "
            "internet address); put that here."
        ]
    if network.subnet_of(_CGNAT):
        return [
            f"# Note: {address} is in the ISP's shared (carrier-grade NAT) range, so other customers share "
            "it: use a certificate connector (-TlsSenderCertificateName) instead, or get a static IP."
        ]
    return []


def reject_direct_send() -> str:
    """Is Direct Send refused (RejectDirectSend, 5.7.68)? And the two ways on if it is.

    The remedies are comments: pasting the whole block must never switch a protection off by itself.
    """
    connector = m365.PS_NEW_CONNECTOR_IP.replace("<name>", quote(DEFAULT_CONNECTOR_NAME)).replace(
        "<public IP>", _IP_PLACEHOLDER
    )
    return "\n".join(
        [
            CONNECT_LINE,
            "# Is Direct Send refused for your organisation?",
            _GET_REJECT_DIRECT_SEND,
            "# False: Direct Send is allowed; nothing to change here.",
            "# True: mail from your own domains that arrives without sign-in is refused "
            f"({m365.DIRECT_SEND_REJECTION.split(';')[0]}) unless an inbound connector matches it. Either",
            "#  - keep it on and relay through a connector for the office's public IP (recommended):",
            f"#    {connector} {_RESTRICT_TO_IP}",
            "#  - or, only if you accept that anyone can send mail in your domains' name to your users:",
            f"#    {m365.PS_REJECT_DIRECT_SEND_OFF}",
        ]
    )


def grant_send_as(sender: str | None, mailbox: str | None) -> str:
    """Let the signed-in ``mailbox`` send as ``sender`` (5.7.60 at MAIL FROM)."""
    command = m365.PS_SEND_AS.replace("<sender mailbox>", _value(sender, "<sender mailbox>")).replace(
        "<signed-in mailbox>", _value(mailbox, "<signed-in mailbox>")
    )
    return "\n".join(
        [
            CONNECT_LINE,
            f"# Let {mailbox or 'the signed-in mailbox'} send as {sender or 'the sender'}:",
            command,
        ]
    )


def for_method(
    method: Method,
    *,
    mailbox: str | None = None,
    ip: str | None = None,
    certificate_name: str | None = None,
) -> str:
    """The block the admin needs for a sending method: SMTP AUTH on, the connector, or RejectDirectSend."""
    if method == "smtp-auth":
        return enable_smtp_auth(mailbox)
    if method == "connector":
        return inbound_connector(ip, certificate_name=certificate_name)
    return reject_direct_send()
