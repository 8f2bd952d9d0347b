"""What an OAuth sign-in needs: the kind, the tenant and application, the authority, and the mailbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

OAuthKind = Literal["oauth-app", "oauth-delegated"]
OAUTH_KINDS: tuple[OAuthKind, ...] = ("oauth-app", "oauth-delegated")

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
#: A signed-in user's permission to send as their mailbox over SMTP. MSAL adds ``offline_access``,
#: ``openid`` and ``profile`` itself (and refuses them when passed), so the refresh token comes anyway.
DELEGATED_SCOPES: tuple[str, ...] = ("https://outlook.office.com/SMTP.Send",)
#: App-only (client credentials): whatever the app was granted on Exchange Online (SMTP.SendAsApp).
APP_SCOPES: tuple[str, ...] = ("https://outlook.office365.com/.default",)
#: The keyring profile of a delegated sign-in's token cache is this prefix and the profile's name.
CACHE_PROFILE_PREFIX = "oauth-cache-"


@dataclass(frozen=True)
class ClientCertificate:
    """An app's certificate credential: the PEM private key and its PEM certificate (for the thumbprint)."""

    private_key: str = field(repr=False)
    certificate: str


@dataclass(frozen=True)
class OAuthSettings:
    """One OAuth sign-in for SMTP: app-only (client credentials) or delegated (a person signs in once)."""

    kind: OAuthKind
    tenant: str
    client_id: str
    user: str
    """The mailbox XOAUTH2 authenticates as (for delegated: the account that must be signed in)."""
    authority: str | None = None
    """None: ``https://login.microsoftonline.com/<tenant>``; other clouds, or a test authority."""
    ca_file: Path | None = None
    """Extra CA certificates trusted for the authority (as well as the system's)."""
    profile: str | None = None
    """Keyring profile: the client secret (oauth-app), or the name of the token cache (oauth-delegated)."""
    timeout: float = 30.0
    resource_scopes: tuple[str, ...] = ()
    """Scopes to ask for instead of SMTP's (e.g. Graph's ``https://graph.microsoft.com/.default``)."""

    @property
    def authority_url(self) -> str:
        if self.authority:
            return self.authority.rstrip("/")
        return f"{DEFAULT_AUTHORITY_HOST}/{self.tenant}"

    @property
    def scopes(self) -> list[str]:
        if self.resource_scopes:
            return list(self.resource_scopes)
        return list(APP_SCOPES if self.kind == "oauth-app" else DELEGATED_SCOPES)

    @property
    def cache_profile(self) -> str:
        """The keyring profile holding this sign-in's token cache."""
        name = self.profile or _profile_safe(self.user)
        return f"{CACHE_PROFILE_PREFIX}{name}"[:64]


def _profile_safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in text).strip("._-") or "default"
