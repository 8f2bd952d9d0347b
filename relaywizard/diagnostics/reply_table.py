"""The replies an office admin meets with Microsoft 365 (and Postfix or any server), as data.

Each entry gives a plain-language meaning and a concrete fix; fixes name the PowerShell or admin-centre
setting, built from ``relaywizard.core.m365`` so a change at Microsoft is a one-line change there.
``relaywizard.diagnostics.replies`` matches replies against this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from relaywizard.core import m365


@dataclass(frozen=True)
class KnownReply:
    """One row of the table.

    ``code`` is an enhanced code ("5.7.139"), a range of details ("5.7.606-649") or any detail ("4.4.*");
    None for an entry matched by its basic code alone, which then applies only to replies without an
    enhanced code. ``text`` is a case-insensitive regular expression searched in the reply's text and
    ``basic`` a basic code: both narrow the match. ``example`` is a reply this entry explains.
    """

    code: str | None
    title: str
    meaning: str
    fix: str
    example: str
    text: str | None = None
    basic: int | None = None
    source: str = ""


_RFC3463 = "RFC 3463"
_RFC4954 = "RFC 4954"
_RFC5321 = "RFC 5321"
_POSTFIX = "Postfix"
_NDR = m365.SRC_NDR
_MFD = m365.SRC_MFD

_MX = m365.MX_HOST_PLACEHOLDER
_SMTP_AUTH = f"{m365.SMTP_AUTH_ENDPOINT.host}:{m365.SMTP_AUTH_ENDPOINT.port}"
_USE_OAUTH = (
    "Switch the device, or relaywizard's relay in front of it, to OAuth 2.0 (XOAUTH2): "
    "relaywizard relay --auth oauth-delegated or --auth oauth-app."
)
_ENABLE_SMTP_AUTH = (
    f"Turn authenticated SMTP on for the sending mailbox: {m365.PS_ENABLE_SMTP_AUTH_MAILBOX} "
    f"(or {m365.ADMIN_CENTER_SMTP_AUTH})."
)
_CONNECTOR = f"create an inbound connector for the office's public IP ({m365.PS_NEW_CONNECTOR_IP})"
_MB = 1024 * 1024
_MAX_MB = m365.MESSAGE_SIZE_MAX.value // _MB
_TOO_BIG = (
    "The message, or its header, is larger than the server accepts. Microsoft 365 allows "
    f"{m365.MESSAGE_SIZE_DEFAULT.value // _MB} MB by default (at most {_MAX_MB} MB, headers at most "
    f"{m365.HEADER_SIZE_MAX.value // 1024} KB); attachments grow by about a third on the way."
)
_SHRINK = (
    "Scan at a lower resolution or in several parts, or raise the mailbox's limit: "
    f"{m365.PS_MAX_SEND_SIZE} (at most {_MAX_MB}MB)."
)
_CONNECTIONS = m365.SMTP_AUTH_CONNECTIONS_PER_MAILBOX.value
_CHECK_PASSWORD = (
    "Check the user name (the mailbox's full address) and re-enter the password; with OAuth, check the "
    "token's scope and that it has not expired."
)


def _basic(code: int, title: str, meaning: str, fix: str = "Nothing to fix.") -> KnownReply:
    """An entry for a reply that has only a basic code; its example is the code and the title."""
    return KnownReply(None, title, meaning, fix, f"{code} {title}", basic=code, source=_RFC5321)


REPLIES: tuple[KnownReply, ...] = (
    # -- Microsoft 365: signing in --------------------------------------------------------------------------
    KnownReply(
        "5.7.57",
        "Not signed in: anonymous mail refused",
        f"The device connected to {m365.SMTP_AUTH_ENDPOINT.host} but did not sign in before sending. That "
        "server only accepts mail from a signed-in mailbox.",
        f"Turn on authentication and STARTTLS in the device's SMTP settings (port 587). A device that cannot "
        f"sign in should use Direct Send or connector relay to {_MX} on port 25, or send through "
        "relaywizard's relay.",
        "530 5.7.57 Client was not authenticated to send anonymous mail during MAIL FROM",
        source=_NDR,
    ),
    KnownReply(
        "5.7.3",
        "Authentication unsuccessful",
        "The server refused the sign-in: a wrong user name or password, or an OAuth token that is wrong, "
        "expired or issued for another scope. App-only OAuth also fails like this when the app's service "
        "principal has no access to the mailbox.",
        f"{_CHECK_PASSWORD} Scopes: {m365.SCOPE_SMTP_SEND} (a signed-in user) or {m365.SCOPE_APP_ONLY} "
        f"(app-only). For app-only, run {m365.PS_NEW_SERVICE_PRINCIPAL} and {m365.PS_MAILBOX_PERMISSION}. "
        "Multi-factor authentication blocks password sign-in: use OAuth.",
        "535 5.7.3 Authentication unsuccessful",
        source=m365.SRC_OAUTH,
    ),
    KnownReply(
        "5.7.3",
        "STARTTLS required",
        f"The device tried to send without encrypting the connection first. {m365.SMTP_AUTH_ENDPOINT.host} "
        "requires STARTTLS with TLS 1.2 or later before anything else.",
        "Set the device to port 587 with STARTTLS (often labelled 'TLS' or 'use secure connection'). "
        "Port 465 ('SSL', implicit TLS) is not supported. A device that cannot do this can send through "
        "relaywizard's relay.",
        "451 5.7.3 STARTTLS is required to send mail",
        text=r"starttls",
        source=_MFD,
    ),
    KnownReply(
        "5.7.139",
        "SMTP AUTH is switched off",
        "Microsoft 365 refused the sign-in because authenticated SMTP is off: for the organisation, for "
        "this mailbox, by security defaults, or by a policy that blocks Basic authentication. The rest of "
        "the server's text says which.",
        f"{_ENABLE_SMTP_AUTH} If security defaults are on, use OAuth, or Conditional Access instead of "
        "security defaults.",
        "535 5.7.139 Authentication unsuccessful",
        source=m365.SRC_FIX_DEVICES,
    ),
    KnownReply(
        "5.7.139",
        "SMTP AUTH is off for the organisation",
        "Authenticated SMTP is switched off for the whole Microsoft 365 organisation (the default for "
        f"tenants created since {m365.SMTP_AUTH_OFF_BY_DEFAULT_FOR_TENANTS_SINCE}), and the mailbox has "
        "no setting of its own that turns it back on.",
        f"{_ENABLE_SMTP_AUTH} Only if every mailbox needs it: {m365.PS_ENABLE_SMTP_AUTH_ORG}.",
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. "
        "Visit https://aka.ms/smtp_auth_disabled for more information.",
        text=r"\btenant\b",
        source=m365.SRC_SET_TRANSPORTCONFIG,
    ),
    KnownReply(
        "5.7.139",
        "SMTP AUTH is off for this mailbox",
        "Authenticated SMTP is switched off for the mailbox the device signs in as.",
        _ENABLE_SMTP_AUTH,
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. "
        "Visit https://aka.ms/smtp_auth_disabled for more information.",
        text=r"\bmailbox\b",
        source=m365.SRC_SET_CASMAILBOX,
    ),
    KnownReply(
        "5.7.139",
        "Blocked by security defaults",
        "Security defaults are on in Microsoft Entra ID, and they switch SMTP AUTH off.",
        f"{_USE_OAUTH} Or protect sign-ins with Conditional Access instead of security defaults "
        f"({m365.ADMIN_CENTER_SECURITY_DEFAULTS}).",
        "535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults "
        "policy. Contact your administrator.",
        text=r"security defaults",
        source=m365.SRC_FIX_DEVICES,
    ),
    KnownReply(
        "5.7.139",
        "Basic authentication blocked by a policy",
        "An authentication policy blocks password (Basic) sign-in for SMTP, even though SMTP AUTH is on.",
        f"{_USE_OAUTH} Or allow it in the user's policy: {m365.PS_ALLOW_BASIC_AUTH_SMTP} (Basic "
        "authentication is going away, so this only buys time).",
        "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
        text=r"basic auth",
        source=m365.SRC_BLOG_BASIC_AUTH,
    ),
    KnownReply(
        "5.7.139",
        "Wrong user name or password",
        "Microsoft 365 did not accept the user name and password.",
        f"{_CHECK_PASSWORD} A mailbox with multi-factor authentication cannot sign in with a password: use "
        "OAuth.",
        "535 5.7.139 Authentication unsuccessful, the user credentials were incorrect.",
        text=r"credentials",
        source=m365.SRC_FIX_DEVICES,
    ),
    KnownReply(
        "5.7.139",
        "Blocked by a sign-in policy",
        "The sign-in was refused by a Conditional Access policy or a multi-factor authentication "
        "requirement of the organisation.",
        "Look up the failed sign-in in Microsoft Entra admin center > Users > Sign-in logs to see which "
        f"policy blocked it. {_USE_OAUTH}",
        "535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated "
        "successfully. Contact your administrator.",
        text=r"criteria",
        source=m365.SRC_FIX_DEVICES,
    ),
    KnownReply(
        "5.7.30",
        "Basic authentication is retired",
        "Microsoft 365 no longer accepts a password (Basic authentication) for sending with SMTP AUTH.",
        f"{_USE_OAUTH} Other ways: connector relay, High Volume Email (internal recipients only) or Graph "
        "sendMail.",
        m365.BASIC_AUTH_REJECTION,
        source=m365.SRC_BLOG_BASIC_AUTH,
    ),
    KnownReply(
        "4.7.66",
        "TLS 1.0 and 1.1 are refused",
        "The device only speaks TLS 1.0 or 1.1; Microsoft 365 requires TLS 1.2 or later.",
        f"Update the device's firmware. Otherwise point it at {m365.SMTP_LEGACY_TLS_ENDPOINT.host} after "
        f"{m365.PS_ALLOW_LEGACY_TLS}, or send through a local relay such as relaywizard's, which speaks "
        "TLS 1.2 upstream.",
        "421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2.",
        source=m365.SRC_SET_TRANSPORTCONFIG,
    ),
    # -- Microsoft 365: senders, connectors, Direct Send ----------------------------------------------------
    KnownReply(
        "5.7.60",
        "Not allowed to send as this sender",
        "The From address is not the signed-in mailbox, and that mailbox has no Send As permission on it. "
        "Devices often use an address like scanner@contoso.com; a display name containing '@' does this too.",
        f"Set the device's From address to the signed-in mailbox, or grant Send As: {m365.PS_SEND_AS}. "
        "Or let relaywizard's relay rewrite the sender (--sender), or use connector relay, which accepts "
        "any address of your domains.",
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
        source=_NDR,
    ),
    KnownReply(
        "5.7.64",
        "No connector matches this sender",
        "The message came to your MX endpoint as mail of your organisation, but no inbound connector matches "
        "the IP address it came from or the certificate it presented.",
        f"Update the connector to the office's current public IP ({m365.PS_SET_CONNECTOR_IP}) or to the "
        f"certificate's name, or {_CONNECTOR}.",
        "550 5.7.64 TenantAttribution; Relay Access Denied",
        source=_NDR,
    ),
    KnownReply(
        "5.7.51",
        "A connector restricts this domain",
        "A connector of the receiving organisation only accepts mail from this domain from certain IP "
        "addresses or with a certain TLS certificate, and this message met neither.",
        "Send from the IP address or with the certificate the connector expects, or correct the connector: "
        f"{m365.PS_SET_CONNECTOR_IP} (or -TlsSenderCertificateName <domain>).",
        "550 5.7.51 TenantInboundAttribution; There is a partner connector configured that matched the "
        "message's recipient domain.",
        source=_NDR,
    ),
    KnownReply(
        "5.7.68",
        "Direct Send is switched off",
        "RejectDirectSend is on: the organisation refuses anonymous mail from its own domains unless an "
        "inbound connector matches it.",
        f"Use connector relay ({m365.PS_NEW_CONNECTOR_IP}), SMTP AUTH, or High Volume Email. "
        f"{m365.PS_REJECT_DIRECT_SEND_OFF} would accept it again, but also lets anyone fake your domain "
        "to your own users.",
        m365.DIRECT_SEND_REJECTION,
        source=m365.SRC_BLOG_DIRECT_SEND,
    ),
    KnownReply(
        "5.7.54",
        "Direct Send cannot reach outside recipients",
        "The message reached the MX endpoint without a sign-in or a matching connector, so it can only go to "
        "mailboxes of your own organisation; this recipient is outside it.",
        f"For outside recipients use connector relay ({_CONNECTOR}) or SMTP AUTH on {_SMTP_AUTH}.",
        "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain",
        source=_NDR,
    ),
    KnownReply(
        "5.7.1",
        "Relay not allowed",
        "The server will not pass this message on to another domain for you: the device is neither signed "
        "in nor matched by a connector.",
        f"Sign in with SMTP AUTH on {_SMTP_AUTH}, or {_CONNECTOR}.",
        "550 5.7.1 Unable to relay",
        text=r"unable to relay",
        source=_NDR,
    ),
    # -- Microsoft 365: reputation, throttling, limits -------------------------------------------------------
    KnownReply(
        "5.7.606-649",
        "Sending IP address is banned",
        "Microsoft has put the public IP address the mail comes from on its blocklist, usually after spam "
        "was sent from it.",
        f"Find and stop whatever sent spam from the office's network, then ask for delisting at "
        f"{m365.DELIST_PORTAL}.",
        "550 5.7.606 Access denied, banned sending IP [203.0.113.10]",
        source=_NDR,
    ),
    KnownReply(
        "4.7.500-699",
        "Temporarily throttled: new sending pattern",
        "Microsoft is slowing down mail from this IP address because its sending pattern is new to it. "
        "This is temporary.",
        f"Retry later (a relay retries by itself). For regular device mail, {_CONNECTOR}, so the mail is "
        "recognised as your organisation's.",
        "451 4.7.500 Server busy. Please try again later from [203.0.113.10]",
        source=_NDR,
    ),
    KnownReply(
        "4.3.2",
        "Too many connections for one mailbox",
        f"More than {_CONNECTIONS} sessions are sending as the same mailbox at once.",
        f"Send through fewer connections (relaywizard relay --connections {_CONNECTIONS} or fewer), "
        "spread the devices over several mailboxes, and retry.",
        "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
        text=r"storedrv|thread limit",
        source=_NDR,
    ),
    KnownReply(
        "5.2.0",
        "Daily recipient limit reached",
        f"The mailbox has sent to more than {m365.SMTP_AUTH_RECIPIENTS_PER_DAY.value:,} recipients in the "
        "last 24 hours.",
        "Wait for the 24 hours to pass; spread the mail over several mailboxes, or use connector relay for "
        "bulk mail.",
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
        text=r"quota",
        source=_NDR,
    ),
    KnownReply(
        "5.2.251-255",
        "Throttled after repeated errors",
        "Microsoft refuses mail from this sender for a while because earlier attempts failed again and "
        "again.",
        "Fix the error the earlier attempts got (see the relay's log), stop retrying for a while, then send "
        "again.",
        "550 5.2.252 SendAsDenied; continuous errors throttling",
        source=_NDR,
    ),
    KnownReply(
        "5.7.705",
        "Organisation blocked from sending",
        "Microsoft has blocked the whole organisation from sending, usually after a spam outbreak from a "
        "compromised account.",
        "Check for compromised accounts, then open a support ticket from the Microsoft 365 admin center.",
        "550 5.7.705 Access denied, tenant has exceeded threshold",
        source=_NDR,
    ),
    KnownReply(
        "5.7.708",
        "Sending IP has a poor reputation",
        "Microsoft refuses the mail because the IP address it would leave from has a low reputation.",
        "Open a support ticket from the Microsoft 365 admin center.",
        "550 5.7.708 Access denied, traffic not accepted from this IP",
        source=_NDR,
    ),
    KnownReply(
        "5.7.750",
        "Sending domain is not registered",
        "Mail is being sent from a domain that is not a verified domain of the organisation.",
        "Add and verify every domain the devices send from (Microsoft 365 admin center > Settings > "
        "Domains), or open a support ticket.",
        "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains",
        source=_NDR,
    ),
    KnownReply(
        "5.1.8",
        "Sender restricted for spam",
        "The sending mailbox is blocked from sending because it sent spam or looked compromised.",
        f"Secure the account (new password, check its sign-ins and rules), then release it: "
        f"{m365.RESTRICTED_ENTITIES}.",
        "550 5.1.8 Access denied, bad outbound sender",
        source=_NDR,
    ),
    KnownReply(
        "5.7.233",
        "External recipient rate limit reached",
        "The organisation has sent to too many outside recipients in a short time.",
        "Wait for the limit to reset; move bulk or marketing mail to a bulk-mail service.",
        "550 5.7.233 Message can't be submitted because the sender has exceeded the tenant external "
        "recipient rate limit",
        source=_NDR,
    ),
    KnownReply(
        "5.2.3",
        "Message too large",
        _TOO_BIG,
        _SHRINK,
        "552 5.2.3 RESOLVER.RST.SendSizeLimit.Org; message too large for this organization",
        source=_NDR,
    ),
    KnownReply(
        "5.3.4",
        "Message too large for the server",
        _TOO_BIG,
        _SHRINK,
        "552 5.3.4 Message size exceeds fixed limit",
        source=_NDR,
    ),
    KnownReply(
        "5.4.1",
        "Recipient address rejected",
        "The recipient's organisation rejected the address: no such recipient exists there "
        "(Directory-Based Edge Blocking).",
        "Check the recipient address for typos. If it is one of your own mailboxes, check that it exists and "
        "that its domain is an accepted domain.",
        "550 5.4.1 Recipient address rejected: Access denied",
        text=r"recipient address rejected|access denied",
        source=_NDR,
    ),
    KnownReply(
        "5.7.23",
        "SPF check failed at the destination",
        "The receiving server looked up the sending domain's SPF record, and the IP address the message came "
        "from is not in it.",
        f"Add the office's public IP to the domain's one v=spf1 record (ip4:<public IP>), next to "
        f"include:{m365.SPF_INCLUDE}, keeping at most {m365.SPF_MAX_DNS_LOOKUPS} DNS lookups.",
        "550 5.7.23 The message was rejected because of Sender Policy Framework violation",
        source=m365.SRC_SPF,
    ),
    KnownReply(
        "5.7.509",
        "DMARC check failed at the destination",
        "The receiving server rejected the message because neither SPF nor DKIM passed for the From "
        "address's domain, and that domain's DMARC policy says to reject.",
        f"Add the relay's public IP to SPF, and publish the DKIM CNAMEs {' and '.join(m365.DKIM_SELECTORS)} "
        "and turn DKIM signing on, so the From domain aligns.",
        "550 5.7.509 Access denied, sending domain contoso.com does not pass DMARC verification and has a "
        "DMARC policy of reject.",
        source=m365.SRC_DMARC,
    ),
    # -- generic security and policy (RFC 3463, RFC 4954, Postfix) ------------------------------------------
    KnownReply(
        "5.7.0",
        "STARTTLS required",
        "The server wants the connection encrypted (STARTTLS) before it accepts a sign-in or mail.",
        "Turn on STARTTLS (often labelled 'TLS') in the device's settings, on port 587.",
        "530 5.7.0 Must issue a STARTTLS command first",
        text=r"starttls",
        source=_POSTFIX,
    ),
    KnownReply(
        "5.7.0",
        "Sign-in required",
        "The server only accepts mail after the client has signed in (SMTP AUTH).",
        "Turn on authentication in the device's SMTP settings, with the mailbox's address and password or "
        "OAuth.",
        "530 5.7.0 Authentication required",
        text=r"authentication required",
        source=_RFC4954,
    ),
    KnownReply(
        "5.7.0",
        "Refused for a security or policy reason",
        "The server refused the command for a security or policy reason it did not specify.",
        "Read the rest of the server's text for the reason; check the sign-in, the sender address and "
        "whether this sending method is allowed.",
        "550 5.7.0 Message rejected by policy",
        source=_RFC3463,
    ),
    KnownReply(
        "5.7.1",
        "Delivery not authorised",
        "The server is not willing to accept this message from this sender or client, for a policy reason.",
        "Read the rest of the server's text for the reason; check that the sending method's permission "
        "(sign-in, Send As, connector) covers this sender and recipient.",
        "550 5.7.1 Delivery not authorized, message refused",
        source=_RFC3463,
    ),
    KnownReply(
        "5.7.1",
        "Sender address not owned by the signed-in user",
        "The device signed in as one mailbox but used a sender address that belongs to another. This is "
        "Postfix's version of Microsoft's 5.7.60.",
        "Set the device's From address to the signed-in mailbox, give the mailbox the right to send as that "
        "address, or let relaywizard's relay rewrite the sender (--sender).",
        "553 5.7.1 <scanner@contoso.com>: Sender address rejected: not owned by user relay@contoso.com",
        text=r"not owned",
        source=_POSTFIX,
    ),
    KnownReply(
        "5.7.1",
        "Relay access denied",
        "The server will not pass mail on to another domain for a client that is neither signed in nor on "
        "its list of allowed networks.",
        "Sign in (SMTP AUTH) before sending, or add the device's network to the server's allowed networks "
        "(relaywizard relay --allow <CIDR>).",
        "554 5.7.1 <someone@example.net>: Relay access denied",
        text=r"relay access denied",
        source=_POSTFIX,
    ),
    KnownReply(
        "5.7.1",
        "Client IP address refused",
        "The server refuses connections or mail from the IP address the device or relay connects from.",
        "Connect from an address the server allows: for a connector, the public IP in the connector; for "
        "relaywizard's relay, a network listed with --allow.",
        "554 5.7.1 <unknown[192.0.2.25]>: Client host rejected: Access denied",
        text=r"client host rejected",
        source=_POSTFIX,
    ),
    KnownReply(
        "5.7.1",
        "Sending IP address is on a blocklist",
        "The receiving server found the IP address the mail comes from on a blocklist.",
        "Check the office's public IP on the blocklist named in the reply and follow its delisting steps "
        f"(Microsoft's: {m365.DELIST_PORTAL}); stop whatever sent spam first.",
        "550 5.7.1 Service unavailable, Client host [203.0.113.10] blocked using Spamhaus",
        text=r"blocked using|block ?list",
        source=_NDR,
    ),
    KnownReply(
        "5.7.4",
        "Sign-in method not offered",
        "The server does not offer the authentication method the device asked for, or none at all here "
        "(the MX endpoint on port 25 accepts no sign-in; smtp.office365.com only after STARTTLS).",
        f"Sign in on {_SMTP_AUTH} after STARTTLS with LOGIN, PLAIN or XOAUTH2; or, on the MX endpoint, turn "
        "authentication off in the device and use Direct Send or a connector.",
        "504 5.7.4 Unrecognized authentication type",
        source=_RFC3463,
    ),
    KnownReply(
        "5.7.8",
        "Wrong user name or password",
        "The server did not accept the credentials (RFC 4954: authentication credentials invalid).",
        _CHECK_PASSWORD,
        "535 5.7.8 Error: authentication failed: authentication failure",
        source=_RFC4954,
    ),
    KnownReply(
        "5.7.9",
        "Sign-in method too weak",
        "The server refuses the authentication method the device chose as too weak for this account.",
        "Turn on STARTTLS and use a stronger method (PLAIN or LOGIN over TLS, or XOAUTH2).",
        "534 5.7.9 Authentication mechanism is too weak",
        source=_RFC4954,
    ),
    KnownReply(
        "5.7.11",
        "Encryption required to sign in",
        "The server only accepts this sign-in method over an encrypted connection.",
        "Turn on STARTTLS in the device's SMTP settings (port 587) before signing in.",
        "538 5.7.11 Encryption required for requested authentication mechanism",
        source=_RFC4954,
    ),
    KnownReply(
        "4.7.0",
        "Temporary authentication failure",
        "The server could not check the credentials just now, because of a problem on its side.",
        "Retry in a few minutes; if it persists, the server's sign-in service (or, with OAuth, the token "
        "service) is down.",
        "454 4.7.0 Temporary authentication failure",
        basic=454,
        source=_RFC4954,
    ),
    KnownReply(
        "4.7.0",
        "Temporarily refused",
        "The server refused the message for now for a security or policy reason, and may accept it later.",
        "Retry later (a relay retries by itself); if it keeps happening, read the server's text for the "
        "reason.",
        "421 4.7.0 Temporary server error. Please try again later",
        source=_RFC3463,
    ),
    KnownReply(
        "2.7.0",
        "Signed in",
        "The sign-in succeeded.",
        "Nothing to fix.",
        "235 2.7.0 Authentication successful",
        source=_RFC4954,
    ),
    # -- generic addressing, network, protocol ---------------------------------------------------------------
    KnownReply(
        "5.1.1",
        "Recipient does not exist",
        "The receiving server has no mailbox with this address.",
        "Check the recipient address for typos; if it is one of your own mailboxes, check that it exists.",
        "550 5.1.1 <nobody@contoso.com>: Recipient address rejected: User unknown in virtual mailbox table",
        source=_RFC3463,
    ),
    KnownReply(
        "5.1.10",
        "Recipient not found",
        "Microsoft 365 could not find this recipient address in the receiving organisation (or the "
        "recipient's domain accepts no mail at all).",
        "Check the recipient address for typos and that the recipient's domain is spelled right.",
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        source=_NDR,
    ),
    KnownReply(
        "4.4.*",
        "Network problem (temporary)",
        "The message could not be passed on because of a network or routing problem: a server that does not "
        "answer, a dropped connection, or a DNS failure.",
        "Retry later (a relay retries by itself). If it persists, check the network path: outbound port 25 "
        "or 587 allowed by the firewall and the ISP, DNS working, the server name right.",
        "421 4.4.2 Connection dropped due to SocketError",
        source=_RFC3463,
    ),
    KnownReply(
        "5.4.*",
        "Routing problem",
        "The message cannot be routed to the recipient's domain: its DNS is wrong or missing, or the mail "
        "goes round in a loop.",
        "Check the recipient's domain for typos and its MX record (relaywizard check <domain> --only dns).",
        "554 5.4.4 Unable to route",
        source=_RFC3463,
    ),
    KnownReply(
        "5.5.1",
        "Sign-in not offered here",
        "The server does not offer sign-in on this connection: the port accepts no AUTH, or only after "
        "STARTTLS.",
        f"Turn on STARTTLS before signing in, and use the submission port ({_SMTP_AUTH}); on the MX endpoint "
        "(port 25) turn authentication off in the device.",
        "503 5.5.1 Error: authentication not enabled",
        text=r"authentication not enabled",
        source=_POSTFIX,
    ),
    KnownReply(
        "5.5.*",
        "SMTP protocol error",
        "The device or relay sent a command the server did not understand, did not expect at that point, "
        "or with arguments it does not accept.",
        "Check the device's SMTP settings (server, port, TLS mode, authentication) and update its firmware; "
        "a local relay such as relaywizard's speaks correct SMTP upstream.",
        "500 5.5.2 Error: bad syntax",
        source=_RFC3463,
    ),
    # -- basic codes without an enhanced code (RFC 5321, RFC 4954) -------------------------------------------
    _basic(220, "Service ready", "The server is ready."),
    _basic(221, "Closing connection", "The server is closing the connection normally."),
    _basic(235, "Signed in", "The sign-in succeeded."),
    _basic(250, "OK", "The server accepted the command."),
    _basic(251, "Will forward", "The recipient is not local, but the server will forward the message."),
    _basic(
        252,
        "Cannot verify the address",
        "The server cannot verify the address but will accept the message and try to deliver it.",
    ),
    _basic(
        334,
        "Sign-in challenge",
        "The server is waiting for the next step of the sign-in.",
        "Nothing to fix; if the exchange stops here, the device's sign-in method does not work with this "
        "server.",
    ),
    _basic(354, "Ready for the message", "The server is waiting for the message's content."),
    _basic(
        421,
        "Service not available",
        "The server is closing the connection: it is shutting down, overloaded, or refuses this client "
        "for now.",
        "Retry later (a relay retries by itself). If it persists, check the server name and port.",
    ),
    _basic(
        450,
        "Mailbox temporarily unavailable",
        "The mailbox cannot take the message just now (busy, or a temporary policy block).",
        "Retry later (a relay retries by itself).",
    ),
    _basic(
        451,
        "Temporary server error",
        "The server had a local error while handling the message.",
        "Retry later (a relay retries by itself).",
    ),
    _basic(
        452,
        "Server out of space",
        "The server has no room for the message just now, or there were too many recipients.",
        "Retry later; send to fewer recipients per message.",
    ),
    _basic(
        454,
        "Temporary sign-in or TLS failure",
        "The server could not do the sign-in or TLS step just now.",
        "Retry in a few minutes.",
    ),
    _basic(
        455,
        "Parameters not accepted for now",
        "The server cannot handle the MAIL FROM or RCPT TO parameters just now.",
        "Retry later.",
    ),
    _basic(
        500,
        "Command not recognised",
        "The server did not understand a command (a syntax error, or a line too long).",
        "Check the device's SMTP settings and firmware; a local relay speaks correct SMTP upstream.",
    ),
    _basic(
        501,
        "Bad command arguments",
        "The server did not accept the arguments of a command, often a malformed address.",
        "Check the sender and recipient addresses configured on the device.",
    ),
    _basic(
        502,
        "Command not implemented",
        "The server does not support a command the client sent.",
        "Check the device's SMTP settings (port, TLS mode, authentication method).",
    ),
    _basic(
        503,
        "Commands in the wrong order",
        "The client sent a command the server did not expect at that point (for example AUTH before "
        "STARTTLS, or RCPT before MAIL).",
        "Check the device's TLS and authentication settings: STARTTLS first, then sign-in, then the message.",
    ),
    _basic(
        504,
        "Parameter not implemented",
        "The server does not support a parameter of the command (often an authentication method).",
        "Choose another authentication method in the device (LOGIN, PLAIN or XOAUTH2 after STARTTLS).",
    ),
    _basic(
        530,
        "Sign-in required",
        "The server only accepts mail after the client signs in, or after STARTTLS.",
        "Turn on authentication and STARTTLS in the device's SMTP settings.",
    ),
    _basic(
        534,
        "Sign-in method too weak",
        "The server refuses the authentication method the device chose as too weak.",
        "Turn on STARTTLS and use a stronger method (PLAIN or LOGIN over TLS, or XOAUTH2).",
    ),
    _basic(535, "Authentication failed", "The server did not accept the sign-in.", _CHECK_PASSWORD),
    _basic(
        538,
        "Encryption required to sign in",
        "The server only accepts this sign-in method over an encrypted connection.",
        "Turn on STARTTLS in the device's SMTP settings before signing in.",
    ),
    _basic(
        521,
        "Host does not accept mail",
        "This host does not accept mail at all (RFC 7504).",
        "Check the server name and port: this host is not the mail server to use.",
    ),
    _basic(
        550,
        "Rejected: mailbox unavailable",
        "The server permanently refused the message: the mailbox does not exist, or policy does not allow "
        "this message.",
        "Read the rest of the server's text for the reason; check the recipient address and the sender's "
        "permissions.",
    ),
    _basic(
        551,
        "User not local",
        "The recipient is not handled by this server.",
        "Check the recipient address, and send through a server that delivers or relays for it.",
    ),
    _basic(
        552,
        "Message too large or mailbox full",
        "The message exceeds the storage allocation: too large, or the mailbox is full.",
        _SHRINK,
    ),
    _basic(
        553,
        "Address not allowed",
        "The server does not accept this address: a malformed address, or a sender the client may not use.",
        "Check the sender address configured on the device and that the signed-in mailbox may use it.",
    ),
    _basic(
        554,
        "Transaction failed",
        "The server refused the connection or the message for a reason it gives in its text, often policy.",
        "Read the rest of the server's text; check that the device's IP or sign-in is allowed to send here.",
    ),
    _basic(
        556,
        "Domain does not accept mail",
        "The recipient's domain does not accept mail (RFC 7504, null MX).",
        "Check the recipient's domain for typos.",
    ),
    _basic(
        555,
        "Parameters not recognised",
        "The server does not recognise a MAIL FROM or RCPT TO parameter the client sent.",
        "Check the device's SMTP settings and firmware; a local relay speaks correct SMTP upstream.",
    ),
)
