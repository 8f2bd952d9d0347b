"""The app registration an OAuth sign-in for SMTP needs, written out step by step with its PowerShell.

Entra ID (the app, its permission, admin consent) and Exchange Online (the service principal, the
mailbox permission or an RBAC role assignment) both have to be right before a token is accepted at
``smtp.office365.com``; a mistake in either only shows as ``535 5.7.3 Authentication unsuccessful``. The
text here fills in the tenant, client id, mailbox and (when known) the enterprise application's object id,
and leaves a ``<placeholder>`` for what is not known yet. Qt-free: the wizard shows it with copy buttons,
the report includes it.

Facts (../shared/m365-facts.md; Microsoft Learn "Authenticate an IMAP, POP or SMTP connection using OAuth"
and "Role Based Access Control for Applications in Exchange Online"): app-only needs ``SMTP.SendAsApp``
(Office 365 Exchange Online, application permission) with admin consent, ``New-ServicePrincipal -AppId
<client id> -ObjectId <the enterprise application's object id>`` and ``Add-MailboxPermission ... -AccessRights
FullAccess``; or instead the RBAC role ``Application SMTP.SendAsApp`` scoped to the mailbox. Delegated needs
the ``SMTP.Send`` delegated permission and, for the device code, public client flows allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from relaywizard.core import validate
from relaywizard.core.validate import InvalidValue

__all__ = [
    "OBJECT_ID_WARNING",
    "RegistrationKind",
    "Step",
    "app_only_steps",
    "client_id",
    "delegated_steps",
    "exchange_block",
    "explain_refused_token",
    "guid",
    "object_id",
    "powershell",
    "steps",
    "tenant",
    "text",
]

RegistrationKind = Literal["oauth-app", "oauth-delegated"]

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MULTI_TENANT = ("common", "organizations", "consumers")

CLIENT_ID_PLACEHOLDER = "<application (client) id>"
OBJECT_ID_PLACEHOLDER = "<object id of the Enterprise application>"
MAILBOX_PLACEHOLDER = "<mailbox>"
DISPLAY_NAME = "relaywizard SMTP"
"""The service principal's display name in Exchange Online (the scripts look it up by this name)."""

OBJECT_ID_WARNING = (
    "Use the Object ID shown under Enterprise applications, not the one under App registrations: the "
    "two pages show different object ids for the same app, and New-ServicePrincipal with the App "
    "registration's one is the usual reason a correct token still gets 535 5.7.3."
)


# -- the values a person types --------------------------------------------------------------------------


def guid(text: str, what: str = "a GUID such as 11111111-2222-3333-4444-555555555555") -> str:
    """A GUID, lower-cased; braces and surrounding spaces are forgiven."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidValue(text, what, message=f"The value is empty; {what} is needed")
    value = text.strip().strip("{}").lower()
    if _GUID.fullmatch(value):
        return value
    compact = re.sub(r"[^0-9a-f]", "", value)
    dashed = f"{compact[:8]}-{compact[8:12]}-{compact[12:16]}-{compact[16:20]}-{compact[20:]}"
    if re.fullmatch(r"[0-9a-f]{32}", value):
        return dashed  # the same GUID without its hyphens
    suggestion = dashed if len(compact) == 32 and re.fullmatch(r"[0-9a-f\s-]+", value) else None
    raise InvalidValue(text, what, reason="8-4-4-4-12 hexadecimal digits", suggestion=suggestion)


def client_id(text: str) -> str:
    """The Application (client) ID of an app registration: a GUID."""
    return guid(text, "an application (client) id, a GUID from the app registration's Overview")


def object_id(text: str) -> str:
    """The Object ID of the app's Enterprise application (service principal): a GUID."""
    return guid(text, "the Enterprise application's object id, a GUID")


def tenant(text: str, *, app_only: bool = False) -> str:
    """A tenant: its id (a GUID) or one of its domains (``contoso.onmicrosoft.com``, ``contoso.com``).

    ``common`` and ``organizations`` work for a person signing in, never for app-only access."""
    expected = "a tenant id (a GUID) or a domain such as contoso.onmicrosoft.com"
    if not isinstance(text, str) or not text.strip():
        raise InvalidValue(text, expected, message=f"The value is empty; {expected} is needed")
    value = text.strip().lower()
    if value in _MULTI_TENANT:
        if app_only:
            raise InvalidValue(
                text,
                expected,
                message=f"App-only access needs the real tenant, not {validate.show(text.strip())}; "
                "use the tenant id or a domain such as contoso.onmicrosoft.com",
            )
        return value
    if re.fullmatch(r"[0-9a-f{}-]+", value) and "." not in value:
        return guid(value, expected)
    try:
        return validate.domain(value)
    except InvalidValue as exc:
        raise InvalidValue(text, expected, suggestion=exc.suggestion) from None


# -- the steps ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One thing an administrator does, in the Entra admin center or in PowerShell."""

    title: str
    text: str
    powershell: str = ""
    warning: str = ""


def _ps(value: str) -> str:
    """A PowerShell single-quoted string (a quote inside is doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _connect() -> str:
    return (
        "# Exchange Online PowerShell (Install-Module ExchangeOnlineManagement, once)\nConnect-ExchangeOnline"
    )


def _smtp_auth_on(mailbox: str) -> str:
    return (
        "# OAuth still needs SMTP AUTH allowed for the mailbox\n"
        f"Set-CASMailbox -Identity {_ps(mailbox)} -SmtpClientAuthenticationDisabled $false"
    )


def app_only_steps(
    tenant_id: str = "", app_id: str = "", mailbox: str = "", enterprise_object_id: str = ""
) -> list[Step]:
    """App-only (client credentials): what to do in Entra and Exchange Online, in order."""
    tenant_text = tenant_id or "your tenant"
    app = app_id or CLIENT_ID_PLACEHOLDER
    box = mailbox or MAILBOX_PLACEHOLDER
    sp_object = enterprise_object_id or OBJECT_ID_PLACEHOLDER
    service_principal = (
        f"{_connect()}\n"
        "# -ObjectId: the Object ID under Enterprise applications, NOT the one under App registrations\n"
        f"New-ServicePrincipal -AppId {_ps(app)} -ObjectId {_ps(sp_object)} "
        f"-DisplayName {_ps(DISPLAY_NAME)}\n"
        f"$sp = Get-ServicePrincipal -Identity {_ps(DISPLAY_NAME)}"
    )
    mailbox_permission = (
        f"Add-MailboxPermission -Identity {_ps(box)} -User $sp.Identity -AccessRights FullAccess\n"
        f"{_smtp_auth_on(box)}"
    )
    rbac = (
        '$scope = New-ManagementScope -Name "relaywizard SMTP senders" '
        f"-RecipientRestrictionFilter \"PrimarySmtpAddress -eq '{box}'\"\n"
        'New-ManagementRoleAssignment -Name "relaywizard SMTP.SendAsApp" -Role "Application SMTP.SendAsApp" '
        "-App $sp.AppId -CustomResourceScope $scope.Name\n"
        f"Test-ServicePrincipalAuthorization -Identity $sp.AppId -Resource {_ps(box)}"
    )
    return [
        Step(
            "Register the app",
            "In the Microsoft Entra admin center, open App registrations, New registration: a name such as "
            f'"{DISPLAY_NAME}", accounts in this organizational directory only, no redirect URI. Its '
            f"Overview shows the Application (client) ID and the Directory (tenant) ID ({tenant_text}).",
        ),
        Step(
            "Give it a credential",
            "Certificates & secrets: New client secret (copy its Value, not its Secret ID, and note when it "
            "expires), or upload a certificate whose private key this computer keeps.",
        ),
        Step(
            "Allow it to send over SMTP",
            "API permissions, Add a permission, APIs my organization uses, Office 365 Exchange Online, "
            "Application permissions: SMTP.SendAsApp. Then Grant admin consent for the tenant; the "
            "permission's status must read Granted.",
        ),
        Step(
            "Find the Enterprise application's object id",
            "Open Enterprise applications (not App registrations), search for the app's name or client id "
            "and copy the Object ID from its Overview.",
            warning=OBJECT_ID_WARNING,
        ),
        Step(
            "Register the service principal in Exchange Online",
            "Exchange Online keeps its own pointer to the app's service principal.",
            powershell=service_principal,
        ),
        Step(
            f"Let it send as {box}",
            "Give the service principal access to the mailbox, and allow SMTP AUTH for the mailbox.",
            powershell=mailbox_permission,
        ),
        Step(
            "Or, instead of the permission and FullAccess: RBAC for Applications",
            "Exchange Online's role for applications, scoped to this mailbox only, replaces both the Entra "
            "permission SMTP.SendAsApp (remove it, it would not be scoped) and Add-MailboxPermission.",
            powershell=rbac,
        ),
    ]


def delegated_steps(tenant_id: str = "", app_id: str = "", mailbox: str = "") -> list[Step]:
    """Delegated (the mailbox signs in once): what to do in Entra and Exchange Online, in order."""
    tenant_text = tenant_id or "your tenant"
    box = mailbox or MAILBOX_PLACEHOLDER
    app = app_id or "the app"
    return [
        Step(
            "Register the app",
            "In the Microsoft Entra admin center, open App registrations, New registration: a name such as "
            f'"{DISPLAY_NAME}", accounts in this organizational directory only. Its Overview shows the '
            f"Application (client) ID and the Directory (tenant) ID ({tenant_text}).",
        ),
        Step(
            "Allow sign-in with a code",
            f"Authentication of {app}: set Allow public client flows to Yes (the device code needs it). For "
            "signing in with this computer's browser, add the platform Mobile and desktop applications "
            "with the redirect URI http://localhost.",
        ),
        Step(
            "Allow it to send over SMTP",
            "API permissions, Add a permission, Microsoft Graph, Delegated permissions: SMTP.Send and "
            "offline_access. Grant admin consent for the tenant (or let the mailbox consent when it first "
            "signs in, if users may consent).",
        ),
        Step(
            f"Allow SMTP AUTH for {box}",
            "OAuth sign-in is still SMTP AUTH: it must not be turned off for the mailbox.",
            powershell=f"{_connect()}\n{_smtp_auth_on(box)}",
        ),
        Step(
            f"Sign in as {box}",
            "Sign in with the code relaywizard shows, as the mailbox itself (not as an administrator). "
            "The sign-in stays in this computer's keyring; it expires after 90 days without use.",
        ),
    ]


def steps(
    kind: RegistrationKind,
    tenant_id: str = "",
    app_id: str = "",
    mailbox: str = "",
    enterprise_object_id: str = "",
) -> list[Step]:
    if kind == "oauth-app":
        return app_only_steps(tenant_id, app_id, mailbox, enterprise_object_id)
    return delegated_steps(tenant_id, app_id, mailbox)


def powershell(
    kind: RegistrationKind,
    tenant_id: str = "",
    app_id: str = "",
    mailbox: str = "",
    enterprise_object_id: str = "",
) -> str:
    """Every PowerShell block of the steps, in order, as one script to paste (connecting once)."""
    blocks = [
        step.powershell
        for step in steps(kind, tenant_id, app_id, mailbox, enterprise_object_id)
        if step.powershell
    ]
    connect = _connect()
    body = [block.replace(connect + "\n", "").replace(connect, "").strip() for block in blocks]
    if kind == "oauth-app":
        # The last block (RBAC) is the alternative to the one before it: comment it out.
        body[-1] = "# Or, instead of Add-MailboxPermission: RBAC for Applications\n" + "\n".join(
            f"# {line}" for line in body[-1].splitlines()
        )
    return "\n\n".join([connect, *(block for block in body if block)])


def exchange_block(app_id: str = "", mailbox: str = "", enterprise_object_id: str = "") -> str:
    """App-only's Exchange Online part alone (no connecting, no SMTP AUTH switch), for the tenant changes:
    the service principal and its FullAccess, with RBAC for Applications as a commented-out alternative."""
    found = app_only_steps("", app_id, mailbox, enterprise_object_id)
    service_principal = found[4].powershell.replace(_connect() + "\n", "").split("\n", 1)[1]
    permission = found[5].powershell.split("\n# OAuth still needs")[0]
    rbac = "\n".join(f"# {line}" for line in found[6].powershell.splitlines())
    return "\n".join(
        [
            "# App-only OAuth: the app's service principal in Exchange Online and its access to the mailbox.",
            f"# -ObjectId: {OBJECT_ID_WARNING}",
            service_principal,
            permission,
            "# Or, instead of Add-MailboxPermission: RBAC for Applications, scoped to the mailbox",
            rbac,
        ]
    )


def text(
    kind: RegistrationKind,
    tenant_id: str = "",
    app_id: str = "",
    mailbox: str = "",
    enterprise_object_id: str = "",
) -> str:
    """The steps as numbered plain text (for the report and the clipboard)."""
    lines: list[str] = []
    for number, step in enumerate(steps(kind, tenant_id, app_id, mailbox, enterprise_object_id), 1):
        lines.append(f"{number}. {step.title}")
        lines.append(f"   {step.text}")
        if step.warning:
            lines.append(f"   WARNING: {step.warning}")
        if step.powershell:
            lines.extend(f"   {line}" for line in step.powershell.splitlines())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def explain_refused_token(kind: RegistrationKind, mailbox: str) -> str:
    """Why Exchange Online answers a token the authority just issued with 535, and what to check first."""
    if kind == "oauth-app":
        return (
            f"Exchange Online refused the app's token for {mailbox}: most often New-ServicePrincipal was "
            "given the App registration's object id instead of the Enterprise application's, or the service "
            f"principal has no FullAccess on {mailbox} (or an RBAC scope without it), or admin consent for "
            "SMTP.SendAsApp is missing; changes in Exchange Online can take a while to apply."
        )
    return (
        f"Exchange Online refused the token for {mailbox}: the account signed in must be {mailbox} itself, "
        "the app needs the SMTP.Send delegated permission with consent, and SMTP AUTH must be allowed for "
        "the mailbox."
    )
