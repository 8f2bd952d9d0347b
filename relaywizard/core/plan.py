"""What the setup wizard collects, as one Qt-free model the pages read and write.

The wizard's pages never talk to each other directly: each reads the ``SetupPlan`` to prefill itself and
writes its answers back. The summary, the report export and the saved profile are all made from it, and
tests can build a plan without any widget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # core sits below diagnostics: only the annotations name its types
    from relaywizard.diagnostics.model import Method, Report

AuthChoice = Literal["oauth", "password", "none"]
OAuthFlow = Literal["oauth-delegated", "oauth-app"]


class UseCase(StrEnum):
    SCANNER = "scanner"
    APPLICATION = "application"
    MONITORING = "monitoring"
    VALIDATE = "validate"

    @property
    def label(self) -> str:
        return {
            UseCase.SCANNER: "A scanner or multifunction printer",
            UseCase.APPLICATION: "An application or script",
            UseCase.MONITORING: "A monitoring, alarm or IoT device",
            UseCase.VALIDATE: "Validate existing settings (technician)",
        }[self]


@dataclass
class Capabilities:
    """What the device or application can do; None where the admin does not know."""

    tls12: bool | None = True
    """It can use TLS 1.2 or newer (STARTTLS)."""
    can_authenticate: bool | None = True
    """It can sign in with a user name and password (SMTP AUTH)."""
    oauth: bool | None = False
    """It can sign in with OAuth 2.0 (modern apps; few devices)."""
    external_recipients: bool = False
    """It must mail people outside the organisation."""
    static_ip: bool | None = False
    """The office has a static public IP address of its own."""
    port_587: bool | None = True
    """It can use port 587 (many old devices only know port 25)."""


@dataclass
class Tenant:
    domain: str = ""
    mailbox: str = ""
    """The mailbox to sign in as (SMTP AUTH), or the sender for Direct Send and connectors."""
    sender: str = ""
    """The From address the device uses (defaults to the mailbox)."""
    public_ip: str = ""
    """The office's public IP (connector relay, SPF)."""
    certificate_name: str = ""
    """Instead of an IP, the connector can match the device's TLS certificate name."""


@dataclass
class OAuthPlan:
    """How an OAuth sign-in is set up: who signs in, in which tenant, with which app registration."""

    kind: OAuthFlow = "oauth-delegated"
    """oauth-delegated: the mailbox signs in once (device code); oauth-app: the app's own credential."""
    tenant: str = ""
    client_id: str = ""
    authority: str = ""
    """Empty: https://login.microsoftonline.com/<tenant>."""
    object_id: str = ""
    """The Enterprise application's object id, for the app registration's PowerShell (optional)."""
    secret_expires: date | None = None
    """When the app's client secret expires, for the warnings ahead of it (optional)."""
    signed_in_as: str = ""
    """oauth-delegated: the account whose sign-in is saved in the keyring; oauth-app: empty."""


@dataclass
class LocalRelay:
    """The relay relaywizard runs on this machine in front of Microsoft 365."""

    enabled: bool = False
    listen: str = ""
    allow: list[str] = field(default_factory=list)
    senders: dict[str, str] = field(default_factory=dict)
    """A sender per device (address, network or login:NAME → mailbox or alias); others use the default."""
    mend_bare_lf: bool = False
    """Accept messages whose lines end with LF alone, stored with CRLF (``bare_lf = "normalize"``)."""


@dataclass
class SetupPlan:
    use_case: UseCase = UseCase.SCANNER
    capabilities: Capabilities = field(default_factory=Capabilities)
    method: Method = "smtp-auth"
    auth: AuthChoice = "password"
    method_overridden: bool = False
    oauth: OAuthPlan = field(default_factory=OAuthPlan)
    """Used when ``auth`` is "oauth"."""
    tenant: Tenant = field(default_factory=Tenant)
    profile: str = ""
    """The name the settings are saved under, and the keyring profile of the secret."""
    secret_stored: bool = False
    keyring_backend: str = ""
    relay: LocalRelay = field(default_factory=LocalRelay)
    report: Report | None = None
    """The last diagnostics run of the tests page."""
    test_message_id: str | None = None
