"""The wizard's OAuth sign-in from its plan: the ``TokenSource`` the credentials and tests pages share the
recipe of, and the validation (a token, then AUTH XOAUTH2 at the SMTP endpoint) the credentials page runs.

No widgets here: the pages call these on the qasync loop; MSAL and the keyring run in threads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from relaywizard.core import app_registration
from relaywizard.core.plan import SetupPlan

if TYPE_CHECKING:
    from relaywizard.auth.model import OAuthSettings
    from relaywizard.auth.source import TokenSource
    from relaywizard.diagnostics.model import CheckResult, Target
    from relaywizard.gui.services import Services


def oauth_settings(plan: SetupPlan, services: Services) -> OAuthSettings:
    """The plan's OAuth sign-in: its kind, tenant, app and mailbox; the keyring profile is the plan's."""
    from relaywizard.auth.model import OAuthSettings

    oauth = plan.oauth
    return OAuthSettings(
        kind=oauth.kind,
        tenant=oauth.tenant,
        client_id=oauth.client_id,
        user=plan.tenant.mailbox,
        authority=services.authority or oauth.authority or None,
        ca_file=Path(services.ca_file) if services.ca_file else None,
        profile=plan.profile or None,
    )


async def token_source(plan: SetupPlan, services: Services) -> TokenSource:
    """A token source for the plan; app-only reads its client secret (or PEM key and certificate) from
    the keyring profile. Keyring errors (locked, missing secret) come as one-sentence errors."""
    from relaywizard.auth.certificate import app_credential
    from relaywizard.auth.source import TokenSource

    settings = oauth_settings(plan, services)
    make_store = services.secret_store

    def open_store() -> tuple[object, str | None]:
        store = make_store()
        secret = store.get(plan.profile) if settings.kind == "oauth-app" else None
        return store, secret

    store, secret = await asyncio.to_thread(open_store)
    credential = app_credential(secret) if secret else None
    return TokenSource(settings, credential=credential, store=store)  # type: ignore[arg-type]


def target(plan: SetupPlan, services: Services, source: TokenSource) -> Target:
    """The SMTP conversation that proves a token: sign in as the mailbox, end before any message."""
    from relaywizard.diagnostics.model import Target

    mailbox = plan.tenant.mailbox
    return Target(
        domain=plan.tenant.domain,
        method="smtp-auth",
        dns_servers=services.dns_servers,
        smtp_host=services.smtp_host,
        smtp_port=services.smtp_port,
        ca_file=Path(services.ca_file) if services.ca_file else None,
        user=mailbox,
        auth=plan.oauth.kind,
        token_provider=source.token,
        mail_from=plan.tenant.sender or mailbox,
        rcpt_to=mailbox,
        send=False,
    )


@dataclass(frozen=True)
class Validation:
    """What the validation found: passed, and one or two sentences to show."""

    passed: bool
    message: str
    auth: CheckResult | None = None


async def validate(plan: SetupPlan, services: Services, source: TokenSource | None = None) -> Validation:
    """Get a token and authenticate with it (AUTH XOAUTH2) at the services' SMTP endpoint, with the
    diagnostics' own SMTP checks; a refusal is explained by the usual registration mistakes."""
    from relaywizard.diagnostics.checks import start_run
    from relaywizard.diagnostics.model import Status

    if source is None:
        source = await token_source(plan, services)
    report = await start_run(target(plan, services, source), only="smtp").run()
    auth = report.result("smtp.auth")
    mailbox = plan.tenant.mailbox
    if auth is not None and auth.status is Status.PASS:
        return Validation(True, f"Validated: the server accepted the token for {mailbox}.", auth)
    if auth is None or auth.status is Status.SKIP:
        failed = next((r for r in report.ordered() if r.status is Status.FAIL), None)
        if failed is None:
            return Validation(False, "The sign-in could not be tried.", auth)
        return Validation(
            False, f"{failed.title} failed before the sign-in could be tried: {failed.summary}", auth
        )
    if auth.data.get("reply_code") == 535:
        reply = str(auth.data.get("reply") or "535").rstrip(".")
        why = app_registration.explain_refused_token(plan.oauth.kind, mailbox)
        return Validation(False, f"{why.rstrip('.')} (the server answered {reply}).", auth)
    return Validation(False, auth.summary, auth)
