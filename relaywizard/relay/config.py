"""The relay's effective configuration: the settings file, with command-line options on top.

``RelayOptions`` is what a person can say on the command line (every field optional); ``resolve``
merges it over the settings file's relay section and upstream profile into a complete ``RelayConfig``,
or raises one readable ``ConfigError`` naming what is missing or inconsistent.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from relaywizard.core import m365, validate
from relaywizard.core.errors import ConfigError
from relaywizard.core.paths import AppPaths
from relaywizard.core.settings import DEFAULT_LISTEN, Settings
from relaywizard.relay.model import TlsMode, Upstream
from relaywizard.relay.policy import BareLf
from relaywizard.relay.senders import SenderMap, SenderRule, parse_rule

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UpstreamAuth = Literal["password", "oauth-app", "oauth-delegated", "none"]
DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"


@dataclass(frozen=True)
class RelayOptions:
    """Command-line overrides; None means "take it from the settings file, else the default"."""

    listen: str | None = None
    allow: tuple[str, ...] = ()
    spool: str | None = None
    upstream: str | None = None
    tls: TlsMode | None = None
    ca_file: str | None = None
    user: str | None = None
    profile: str | None = None
    auth: UpstreamAuth | None = None
    sender: str | None = None
    rate: int | None = None
    connections: int | None = None
    devices: tuple[str, ...] = ()
    auth_networks: tuple[str, ...] = ()
    recipient_domains: tuple[str, ...] = ()
    tls_cert: str | None = None
    tls_key: str | None = None
    tenant: str | None = None
    client_id: str | None = None
    authority: str | None = None
    graph_url: str | None = None
    """Deliver through Microsoft Graph at this base URL; "" means the default (``--graph`` alone)."""
    device_senders: tuple[str, ...] = ()
    """``DEVICE=ADDRESS`` pairs (``--device-sender``), added to the settings' ``[relay.senders]``."""
    bare_lf: BareLf | None = None
    """``--bare-lf``: refuse a message with LF-only line ends, or normalize them to CRLF."""


def device_profile(login: str) -> str:
    """The keyring profile holding a device account's password."""
    return f"device-{login}"


@dataclass(frozen=True)
class RelayConfig:
    """Everything the engine needs, validated; no secret (the keyring profile is named instead)."""

    listen_host: str
    listen_port: int
    allow: tuple[Network, ...]
    spool: Path
    delivery_log: Path
    upstream: Upstream
    auth: UpstreamAuth
    profile: str | None
    """The keyring profile holding the upstream secret."""
    sender: str | None
    rate: int
    connections: int
    max_message_size: int
    devices: tuple[str, ...] = ()
    """Device logins that may authenticate (AUTH PLAIN/LOGIN); passwords in the keyring."""
    auth_networks: tuple[Network, ...] = ()
    """Networks where devices may authenticate without TLS."""
    recipient_domains: tuple[str, ...] | None = None
    """Internal-only mode: only these domains may be mailed."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    hostname: str = field(default_factory=socket.getfqdn)
    tenant: str | None = None
    """OAuth (--auth oauth-*): the Entra tenant, the application and the authority URL."""
    client_id: str | None = None
    authority: str | None = None
    graph_url: str | None = None
    """Microsoft Graph's base URL when the relay delivers with sendMail instead of SMTP."""
    app_valid_until: dt.date | None = None
    """oauth-app: the day the app's client secret expires, for the warnings ahead of it."""
    device_senders: tuple[SenderRule, ...] = ()
    """A sender per device; devices no rule names send as ``sender``."""
    bare_lf: BareLf = "refuse"
    """What the inbound server does with LF-only line ends (see ``InboundPolicy.bare_lf``)."""

    def sender_map(self) -> SenderMap:
        return SenderMap(self.device_senders, self.sender)


def _fail(option: str, exc: ValueError) -> ConfigError:
    return ConfigError(f"{option}: {exc}")


def _device_senders(table: dict[str, str], pairs: tuple[str, ...]) -> tuple[SenderRule, ...]:
    """The settings' ``[relay.senders]`` (already checked), then ``--device-sender`` pairs over them."""
    rules = {device: SenderRule(device, sender) for device, sender in table.items()}
    for text in pairs:
        try:
            rule = parse_rule(text)
        except ValueError as exc:
            raise _fail("--device-sender", exc) from None
        rules[rule.device] = rule
    return tuple(rules.values())


def graph_base_url(text: str) -> str:
    """A Graph base URL such as https://graph.microsoft.com/v1.0, without a trailing slash."""
    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise ValueError(f"'{text}' is not an https:// URL (the bearer token must not travel unencrypted)")
    if parts.query or parts.fragment:
        raise ValueError(f"'{text}' has a query or fragment; give the base URL, such as {DEFAULT_GRAPH_URL}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(f"'{text}' has an invalid port") from None
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/")))


def resolve(settings: Settings, options: RelayOptions, paths: AppPaths) -> RelayConfig:
    """Merge ``options`` over ``settings``; any problem is one ``ConfigError`` sentence."""
    relay = settings.relay
    profile = settings.relay_profile()
    try:
        host, port = validate.host_port(options.listen or relay.listen or DEFAULT_LISTEN, None)
    except ValueError as exc:
        raise _fail("--listen", exc) from None
    allow_text = options.allow or tuple(relay.allow)
    try:
        allow = tuple(ipaddress.ip_network(validate.cidr(text)) for text in allow_text)
    except ValueError as exc:
        raise _fail("--allow", exc) from None

    # Direct Send and a connector deliver to the domain's MX endpoint on port 25; SMTP AUTH submits on 587.
    method_port = (
        25 if profile and profile.method in ("direct-send", "connector") else m365.SMTP_AUTH_ENDPOINT.port
    )
    default_host = profile.smtp_host if profile and profile.smtp_host else m365.SMTP_AUTH_ENDPOINT.host
    default_port = profile.smtp_port if profile and profile.smtp_port else method_port
    try:
        up_host, up_port = (
            validate.host_port(options.upstream, method_port)
            if options.upstream
            else (default_host, default_port)
        )
    except ValueError as exc:
        raise _fail("--upstream", exc) from None
    graph_url: str | None = None
    if options.graph_url is not None:
        try:
            graph_url = graph_base_url(options.graph_url or DEFAULT_GRAPH_URL)
        except ValueError as exc:
            raise _fail("--graph", exc) from None
        if options.upstream or options.tls:
            raise ConfigError("--graph replaces --upstream and --tls: give one upstream, not both.")
    tls = cast(TlsMode, options.tls or (profile.tls if profile else "starttls"))
    user = options.user or (profile.user if profile else None)
    if user is not None:
        try:
            user = validate.email(user)
        except ValueError as exc:
            raise _fail("--user", exc) from None
    keyring_profile = options.profile or (profile.name if profile and user else None)
    auth = cast(
        UpstreamAuth,
        options.auth
        or (profile.auth if profile else None)
        or ("oauth-app" if graph_url else "password" if user else "none"),
    )
    if user and auth == "none":
        auth = "password"
    if graph_url and auth not in ("oauth-app", "oauth-delegated"):
        raise ConfigError(
            f"Microsoft Graph takes only OAuth tokens, not {auth} authentication: give --auth oauth-app "
            "(app permissions Mail.Send, and Mail.ReadWrite for messages over about 3 MB) or --auth "
            "oauth-delegated, and --user with the mailbox to send as.",
        )
    if auth != "none" and not user:
        raise ConfigError(
            f"Upstream authentication ({auth}) needs the mailbox to sign in as: give --user.",
        )
    if user and not keyring_profile:
        raise ConfigError(
            f"No keyring profile holds the secret of {user}: give --profile NAME "
            "(store it first with: relaywizard secret set --profile NAME).",
        )
    if tls == "none" and user:
        raise ConfigError(
            "--tls none would send the upstream password unencrypted: it is only for direct-send and "
            "connector relay, without --user.",
        )
    # Microsoft 365 refuses a sender the mailbox may not send as (5.7.60): by default the relay sends as
    # the mailbox it signs in with, keeping the device's own address in Reply-To.
    sender = options.sender or (profile.sender if profile else None) or user
    if sender:
        try:
            sender = validate.email(sender)
        except ValueError as exc:
            raise _fail("--sender", exc) from None
    ca_file = options.ca_file or (profile.ca_file if profile else None)
    if ca_file and not Path(ca_file).expanduser().is_file():
        raise ConfigError(f"--ca-file: '{ca_file}' is not a readable file.")
    rate = relay.rate if options.rate is None else options.rate
    connections = relay.connections if options.connections is None else options.connections
    if rate < 0:
        raise ConfigError(f"--rate must be 0 (no pacing) or a number of messages a minute, not {rate}.")
    if not 1 <= connections <= 100:
        raise ConfigError(f"--connections must be between 1 and 100, not {connections}.")
    spool = Path(options.spool or relay.spool or paths.spool).expanduser()
    try:
        devices = tuple(validate.profile_name(d) for d in (options.devices or relay.devices))
    except ValueError as exc:
        raise _fail("--device", exc) from None
    try:
        auth_networks = tuple(
            ipaddress.ip_network(validate.cidr(text))
            for text in (options.auth_networks or relay.auth_networks)
        )
    except ValueError as exc:
        raise _fail("--auth-network", exc) from None
    try:
        domains = tuple(validate.domain(d) for d in (options.recipient_domains or relay.recipient_domains))
    except ValueError as exc:
        raise _fail("--recipient-domain", exc) from None
    tls_cert = options.tls_cert or relay.tls_cert
    tls_key = options.tls_key or relay.tls_key
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("--tls-cert and --tls-key go together: give both, or neither.")
    for option, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path and not Path(path).expanduser().is_file():
            raise ConfigError(f"{option}: '{path}' is not a readable file.")
    return RelayConfig(
        devices=devices,
        auth_networks=auth_networks,
        recipient_domains=domains or None,
        tls_cert=Path(tls_cert).expanduser() if tls_cert else None,
        tls_key=Path(tls_key).expanduser() if tls_key else None,
        listen_host=host,
        listen_port=port if port is not None else 2525,
        allow=allow,
        spool=spool,
        delivery_log=paths.delivery_log,
        upstream=Upstream(host=up_host, port=up_port, tls=tls, user=user, ca_file=ca_file),
        auth=auth,
        profile=keyring_profile,
        sender=sender,
        rate=rate,
        connections=connections,
        max_message_size=relay.max_message_size,
        tenant=options.tenant or (profile.tenant if profile else None),
        client_id=options.client_id or (profile.client_id if profile else None),
        authority=options.authority or (profile.authority if profile else None),
        graph_url=graph_url,
        device_senders=_device_senders(relay.senders, options.device_senders),
        bare_lf=options.bare_lf or cast(BareLf, relay.bare_lf),
        app_valid_until=dt.date.fromisoformat(profile.app_valid_until)
        if profile and profile.app_valid_until
        else None,
    )
