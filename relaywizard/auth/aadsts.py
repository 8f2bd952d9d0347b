"""An authority's error answer (``{"error": "invalid_grant", "error_description": "AADSTS70043: ..."}``)
turned into one ``OAuthError`` sentence with its likely cause and what to do.

The ``AADSTS`` number is the most precise: it is looked up first (from ``error_codes`` or the
description), then the OAuth ``error``; an unknown answer still names its code and the authority's own
first sentence. Messages may name ``{user}``, ``{client_id}``, ``{tenant}`` and ``{authority}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relaywizard.auth.errors import OAuthError, SignInRequired
from relaywizard.auth.model import OAuthSettings

_SIGN_IN_AGAIN = "Sign in again with: relaywizard signin (or the wizard's sign-in page)."
_NEW_SECRET = (
    "In the Entra admin center, open the app registration's Certificates & secrets, add a new client "
    "secret, and store its Value (not its Secret ID) with: relaywizard secret set --profile NAME."
)
_CONSENT = (
    "An administrator must grant consent: in the app registration's API permissions add Office 365 "
    "Exchange Online SMTP.SendAsApp (app-only) or SMTP.Send (delegated), then Grant admin consent."
)


@dataclass(frozen=True)
class Cause:
    """What an error code most likely means, for a person."""

    title: str
    message: str
    hint: str
    sign_in: bool = False
    """A person has to sign in (again): the error is a ``SignInRequired``."""


#: AADSTS numbers (https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
AADSTS: dict[str, Cause] = {
    "70043": Cause(
        "Sign-in expired",
        "The saved sign-in of {user} has expired under a Conditional Access sign-in frequency policy.",
        _SIGN_IN_AGAIN,
        sign_in=True,
    ),
    "700082": Cause(
        "Sign-in expired",
        "The saved sign-in of {user} expired because it was not used for 90 days.",
        _SIGN_IN_AGAIN + " Keep the relay running so the sign-in stays in use.",
        sign_in=True,
    ),
    "70008": Cause(
        "Sign-in expired",
        "The saved sign-in of {user} has expired or was revoked.",
        _SIGN_IN_AGAIN,
        sign_in=True,
    ),
    "50173": Cause(
        "Sign-in revoked",
        "The saved sign-in of {user} was revoked, usually because the password was changed or reset.",
        _SIGN_IN_AGAIN,
        sign_in=True,
    ),
    "50076": Cause(
        "Multi-factor authentication required",
        "Microsoft requires multi-factor authentication for {user}, which a saved sign-in cannot answer.",
        "Sign in again interactively (relaywizard signin) and complete the MFA prompt.",
        sign_in=True,
    ),
    "50079": Cause(
        "MFA registration required",
        "{user} must register for multi-factor authentication before signing in.",
        "Sign in once at https://aka.ms/mfasetup, then run relaywizard signin again.",
        sign_in=True,
    ),
    "53003": Cause(
        "Blocked by Conditional Access",
        "A Conditional Access policy of the tenant blocked the sign-in of {user}.",
        "Ask the administrator to check the sign-in logs for the policy that blocked it, and to exclude "
        "this device, location or app from it.",
    ),
    "50058": Cause(
        "Not signed in",
        "No one is signed in for {user}, so a token could not be obtained silently.",
        _SIGN_IN_AGAIN,
        sign_in=True,
    ),
    "7000215": Cause(
        "Wrong client secret",
        "The client secret stored for app {client_id} is not valid.",
        "Store the secret's Value, not its Secret ID. " + _NEW_SECRET,
    ),
    "7000222": Cause(
        "Client secret expired",
        "The client secret of app {client_id} has expired.",
        _NEW_SECRET,
    ),
    "7000218": Cause(
        "Public client flows are off",
        "App {client_id} does not allow public client flows, which device-code sign-in needs.",
        "In the app registration's Authentication page, set Allow public client flows to Yes.",
    ),
    "700027": Cause(
        "Certificate not accepted",
        "The certificate app {client_id} signed in with is not one uploaded to its app registration.",
        "Upload the certificate (the .cer/.pem without the private key) under Certificates & secrets, "
        "or use the key of a certificate already there.",
    ),
    "700024": Cause(
        "Clock out of sync",
        "The authority refused the app's signed assertion because this computer's clock is wrong.",
        "Set the system clock to synchronise with a time server, then try again.",
    ),
    "50013": Cause(
        "Assertion refused",
        "The authority refused the signed assertion of app {client_id} (expired, or a bad signature).",
        "Check the computer's clock and that the certificate's private key matches the uploaded one.",
    ),
    "65001": Cause(
        "Consent missing",
        "Nobody has consented to app {client_id} sending mail for {user}.",
        _CONSENT,
    ),
    "700016": Cause(
        "App not found",
        "There is no app {client_id} in tenant {tenant}.",
        "Check the client id (Application ID, not the Object ID) and the tenant; an app from another "
        "tenant needs admin consent here first.",
    ),
    "7000112": Cause(
        "App disabled",
        "App {client_id} is disabled in tenant {tenant}.",
        "Enable its enterprise application (Properties: Enabled for users to sign in) in the Entra admin "
        "center.",
    ),
    "90002": Cause(
        "Tenant not found",
        "There is no Entra tenant '{tenant}'.",
        "Give the tenant's ID (a GUID) or its domain such as contoso.onmicrosoft.com.",
    ),
    "50194": Cause(
        "Tenant needed",
        "App {client_id} is a single-tenant app, so it cannot sign in through the 'common' endpoint.",
        "Give --tenant with the tenant's ID or domain instead of common or organizations.",
    ),
    "50034": Cause(
        "User not found",
        "The account {user} does not exist in tenant {tenant}.",
        "Check the mailbox address, and that it is a user of this tenant.",
    ),
    "50126": Cause(
        "Wrong user name or password",
        "The user name or password of {user} was not accepted.",
        "Sign in again with the right password.",
        sign_in=True,
    ),
    "50020": Cause(
        "Account from another tenant",
        "The account that signed in is not a member of tenant {tenant}.",
        "Sign in with {user}, an account of this tenant, not a personal or another organisation's account.",
        sign_in=True,
    ),
    "50053": Cause(
        "Account locked",
        "The account {user} is locked after too many failed sign-ins.",
        "Wait for the lock to expire, or ask the administrator to unlock it.",
    ),
    "50055": Cause(
        "Password expired",
        "The password of {user} has expired.",
        "Change it at https://myaccount.microsoft.com, then sign in again.",
        sign_in=True,
    ),
    "50057": Cause(
        "Account disabled",
        "The account {user} is disabled.",
        "Ask the administrator to enable the account (Block sign-in: No).",
    ),
    "500011": Cause(
        "Exchange Online not found",
        "Tenant {tenant} has no Exchange Online to issue a token for.",
        "Check the tenant, and that it has Exchange Online licences.",
    ),
    "70011": Cause(
        "Invalid scope",
        "The authority refused the permission relaywizard asked for.",
        "For app-only access the scope is https://outlook.office365.com/.default; check the authority URL.",
    ),
    "70019": Cause(
        "Code expired",
        "The sign-in code expired before anyone entered it.",
        "Start the sign-in again and enter the code within 15 minutes.",
        sign_in=True,
    ),
}

#: OAuth 2.0 error codes (RFC 6749 5.2, RFC 8628 3.5), for answers without a known AADSTS number.
OAUTH_ERRORS: dict[str, Cause] = {
    "invalid_grant": Cause(
        "Sign-in no longer valid",
        "The saved sign-in of {user} was refused (expired, revoked, or another account signed in).",
        _SIGN_IN_AGAIN,
        sign_in=True,
    ),
    "invalid_client": Cause(
        "App credential refused",
        "The authority refused the credential of app {client_id} (a wrong or expired client secret or "
        "certificate).",
        _NEW_SECRET,
    ),
    "unauthorized_client": Cause(
        "App not allowed",
        "App {client_id} is not allowed to use this kind of sign-in in tenant {tenant}.",
        "Check the client id and tenant, and that the app registration allows this flow (public client "
        "flows for device-code sign-in).",
    ),
    "consent_required": Cause("Consent missing", "Nobody has consented to app {client_id}.", _CONSENT),
    "interaction_required": Cause(
        "Sign-in needed",
        "The sign-in of {user} needs a person to complete it (MFA, consent or a policy).",
        _SIGN_IN_AGAIN,
        sign_in=True,
    ),
    "invalid_scope": Cause(
        "Invalid scope",
        "The authority refused the permission relaywizard asked for.",
        "Check the authority URL and that the app has Exchange Online SMTP permissions.",
    ),
    "access_denied": Cause(
        "Sign-in declined",
        "The sign-in was declined.",
        "Sign in again and accept the permission request.",
        sign_in=True,
    ),
    "authorization_declined": Cause(
        "Sign-in declined",
        "The person signing in declined the request.",
        "Sign in again and accept the permission request.",
        sign_in=True,
    ),
    "expired_token": Cause(
        "Code expired",
        "The sign-in code expired before anyone entered it.",
        "Start the sign-in again and enter the code within 15 minutes.",
        sign_in=True,
    ),
    "bad_verification_code": Cause(
        "Sign-in code not recognised",
        "The authority did not recognise the sign-in code.",
        "Start the sign-in again.",
        sign_in=True,
    ),
    "temporarily_unavailable": Cause(
        "Sign-in service busy",
        "The sign-in service is temporarily unavailable.",
        "Try again in a few minutes.",
    ),
}

_AADSTS = re.compile(r"AADSTS(\d+)")


def aadsts_code(answer: Mapping[str, Any]) -> str | None:
    """The AADSTS number of an error answer, from ``error_codes`` or the description."""
    codes = answer.get("error_codes")
    if isinstance(codes, list) and codes and isinstance(codes[0], int | str):
        return str(codes[0])
    found = _AADSTS.search(str(answer.get("error_description") or ""))
    return found[1] if found else None


def _first_sentence(text: str) -> str:
    text = re.sub(r"^AADSTS\d+:\s*", "", " ".join(text.split()))
    text = re.split(r"(?<=\.)\s|\s(?:Trace|Correlation) ID:", text, maxsplit=1)[0]
    return text.rstrip(".")[:200]


def explain(answer: Mapping[str, Any], settings: OAuthSettings) -> OAuthError:
    """The ``OAuthError`` (or ``SignInRequired``) for an authority's error answer."""
    number = aadsts_code(answer)
    error = str(answer.get("error") or "")
    cause = (AADSTS.get(number) if number else None) or OAUTH_ERRORS.get(error)
    code = f"AADSTS{number}" if number else error
    if cause is None:
        description = _first_sentence(str(answer.get("error_description") or ""))
        said = f": {description}" if description else ""
        return OAuthError(
            f"The authority refused the sign-in for {settings.user} ({code or 'no error code'}){said}.",
            hint="Check the tenant, the client id and the app's permissions, then try again.",
            code=code,
        )
    fields = {
        "user": settings.user,
        "client_id": settings.client_id,
        "tenant": settings.tenant,
        "authority": settings.authority_url,
    }
    kind = SignInRequired if cause.sign_in else OAuthError
    message = cause.message.format(**fields)
    if code:
        message = f"{message.rstrip('.')} ({code})."
    return kind(message, hint=cause.hint.format(**fields), title=cause.title, code=code)
