"""OAuth on the command line: the options of ``check`` and ``relay`` turned into a ``TokenSource``, and
``relaywizard signin``, which signs a mailbox in once so a headless relay never has to ask at night.

The device code and link go to standard error, so ``check --json`` keeps standard output clean.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from relaywizard.core import validate
from relaywizard.core.errors import ConfigError, UsageError
from relaywizard.core.settings import MULTI_TENANT_ALIASES

if TYPE_CHECKING:
    from relaywizard.auth.model import ClientCertificate, OAuthSettings
    from relaywizard.auth.source import DeviceCode, TokenSource
    from relaywizard.auth.upstream import SourceCredentials
    from relaywizard.relay.config import RelayConfig


def oauth_settings(
    *,
    kind: str,
    tenant: str | None,
    client_id: str | None,
    authority: str | None,
    user: str | None,
    ca_file: Path | None,
    profile: str | None,
    timeout: float = 30.0,
) -> OAuthSettings:
    """Checked OAuth settings; anything missing or malformed is one ``UsageError`` sentence."""
    from relaywizard.auth.model import OAuthSettings

    if kind not in ("oauth-app", "oauth-delegated"):
        raise UsageError(f"--auth {kind} is not an OAuth sign-in.")
    if not user:
        raise UsageError(f"--auth {kind} needs --user, the mailbox to send as.")
    if not client_id:
        raise UsageError(f"--auth {kind} needs --client-id, the application (client) id from Entra.")
    if not tenant and not authority:
        raise UsageError(
            f"--auth {kind} needs --tenant, the Entra tenant id or domain (or --authority with its URL)."
        )
    if kind == "oauth-app" and not authority and (tenant or "").lower() in MULTI_TENANT_ALIASES:
        raise UsageError(
            f"--tenant {tenant}: app-only sign-in needs the real tenant, such as contoso.onmicrosoft.com."
        )
    if authority is not None:
        parts = urlsplit(authority)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise UsageError(
                f"--authority: '{authority}' is not an https:// URL such as "
                "https://login.microsoftonline.com/contoso.onmicrosoft.com."
            )
    if profile is not None:
        try:
            validate.profile_name(profile)
        except ValueError as exc:
            raise UsageError(f"--profile: {exc}") from None
    return OAuthSettings(
        kind=kind,  # type: ignore[arg-type]
        tenant=tenant or "",
        client_id=client_id,
        user=user,
        authority=authority,
        ca_file=ca_file,
        profile=profile,
        timeout=timeout,
    )


def app_credential(secret: str) -> str | ClientCertificate:
    """A client secret, or (a PEM private key and certificate in one secret) a certificate credential."""
    from relaywizard.auth.certificate import app_credential as parse

    try:
        return parse(secret)
    except ConfigError as exc:  # on the command line it is the option's value that is wrong
        raise UsageError(exc.message, hint=exc.hint) from None


def token_source(settings: OAuthSettings, client_secret: str | None = None) -> TokenSource:
    """The token source for ``settings``; oauth-app needs ``client_secret`` (a secret or PEM key+cert)."""
    from relaywizard.auth.source import TokenSource

    if settings.kind == "oauth-app" and not client_secret:
        raise UsageError(
            "--auth oauth-app needs the app's client secret: --profile NAME (from the keyring) or "
            "--password-stdin."
        )
    credential = app_credential(client_secret) if client_secret else None
    return TokenSource(settings, credential=credential)


def show_device_code(code: DeviceCode) -> None:
    """The sign-in instructions, on standard error."""
    text = code.message or f"Open {code.verification_uri} and enter the code {code.user_code}."
    print(f"relaywizard: {text}", file=sys.stderr, flush=True)


async def sign_in_if_needed(source: TokenSource) -> None:
    """A delegated source with no saved sign-in for its user: sign in now with a device code."""
    if source.settings.kind != "oauth-delegated":
        return
    if await source.signed_in_account() is None:
        await source.sign_in_with_device_code(show_device_code)


# -- relaywizard signin ------------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "signin",
        help="sign a mailbox in with OAuth once, for check and the relay (delegated access)",
        description="Sign the mailbox --user in to Microsoft 365 (OAuth 2.0, delegated, scope SMTP.Send) "
        "with a device code shown here, or with --browser in this computer's browser. The sign-in (a "
        "refresh token) is kept in the OS keyring, never in a file; check and the relay then use it "
        "with --auth oauth-delegated and the same --profile. Sign in again when told the saved sign-in "
        "expired.",
    )
    parser.add_argument("--user", required=True, metavar="ADDRESS", help="the mailbox to sign in as")
    parser.add_argument("--tenant", metavar="ID", help="the Entra tenant id or domain")
    parser.add_argument("--client-id", required=True, metavar="ID", help="the Entra application (client) id")
    parser.add_argument(
        "--authority",
        metavar="URL",
        help="the OAuth authority (default https://login.microsoftonline.com/<tenant>)",
    )
    parser.add_argument("--ca-file", metavar="PEM", help="extra CA certificates trusted for the authority")
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="the keyring profile the sign-in is saved under (default: derived from --user); give the relay "
        "the same one",
    )
    parser.add_argument("--browser", action="store_true", help="sign in in this computer's web browser")
    parser.set_defaults(handler=run_signin)


def _ca_file(text: str | None) -> Path | None:
    if text is None:
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise UsageError(f"--ca-file: '{text}' is not a readable file.")
    return path


def run_signin(args: argparse.Namespace) -> int:
    try:
        user = validate.email(args.user)
    except ValueError as exc:
        raise UsageError(f"--user: {exc}") from None
    settings = oauth_settings(
        kind="oauth-delegated",
        tenant=args.tenant,
        client_id=args.client_id,
        authority=args.authority,
        user=user,
        ca_file=_ca_file(args.ca_file),
        profile=args.profile,
    )
    source = token_source(settings)

    async def sign_in() -> None:
        if args.browser:
            await source.sign_in_interactively()
        else:
            await source.sign_in_with_device_code(show_device_code)

    asyncio.run(sign_in())
    print(f"Signed in as {user}; the sign-in is saved in the keyring ({settings.cache_profile}).")
    return 0


# -- the relay ---------------------------------------------------------------------------------------------


def relay_credentials(config: RelayConfig, *, secret_expires: date | None = None) -> SourceCredentials:
    """OAuth credentials for the relay's upstream (``config.auth`` is oauth-app or oauth-delegated)."""
    from relaywizard.core.secrets import SecretStore

    ca_file = Path(config.upstream.ca_file).expanduser() if config.upstream.ca_file else None
    try:
        settings = oauth_settings(
            kind=config.auth,
            tenant=config.tenant,
            client_id=config.client_id,
            authority=config.authority,
            user=config.upstream.user,
            ca_file=ca_file,
            profile=config.profile,
        )
    except UsageError as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None
    from relaywizard.auth.upstream import SourceCredentials

    if config.graph_url is not None:  # a token for Graph (Mail.Send; Mail.ReadWrite for large messages)
        from relaywizard.core.m365 import GRAPH_LARGE_PERMISSION, GRAPH_PERMISSION
        from relaywizard.relay.graph import GRAPH_SCOPE

        permissions = (GRAPH_PERMISSION, GRAPH_LARGE_PERMISSION)
        delegated = tuple(f"https://graph.microsoft.com/{permission}" for permission in permissions)
        graph = (GRAPH_SCOPE,) if config.auth == "oauth-app" else delegated
        settings = dataclasses.replace(settings, resource_scopes=graph)
    secret = SecretStore().get(config.profile) if config.auth == "oauth-app" and config.profile else None
    return SourceCredentials(token_source(settings, secret), secret_expires=secret_expires)
