"""``relaywizard relay``: the relay in the foreground, headless; Ctrl-C or SIGTERM stops it cleanly."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from relaywizard.core.errors import ConfigError, UsageError
from relaywizard.core.paths import AppPaths

if TYPE_CHECKING:
    from relaywizard.relay.config import RelayConfig, RelayOptions
    from relaywizard.relay.credentials import Credentials
    from relaywizard.relay.forwarder_types import ForwarderEvent


def add_relay_options(parser: argparse.ArgumentParser) -> None:
    """The options ``relay`` and ``tray`` share (contract.md)."""
    parser.add_argument("--config", metavar="FILE", help="settings file written by the wizard")
    parser.add_argument("--listen", metavar="HOST:PORT", help="where office devices connect")
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="CIDR",
        help="networks that may send without AUTH (repeatable); nothing else may relay",
    )
    parser.add_argument("--spool", metavar="DIR", help="the on-disk queue")
    parser.add_argument(
        "--upstream", metavar="HOST:PORT", help="where mail is forwarded (default smtp.office365.com:587)"
    )
    parser.add_argument("--tls", choices=("starttls", "implicit", "none"), help="upstream transport security")
    parser.add_argument("--ca-file", metavar="PEM", help="extra CA certificates for the upstream")
    parser.add_argument("--user", metavar="ADDRESS", help="the upstream mailbox")
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="the keyring profile holding the upstream secret (the password, or with --auth oauth-app the "
        "client secret); with --auth oauth-delegated, the sign-in saved by relaywizard signin --profile NAME",
    )
    parser.add_argument(
        "--auth",
        choices=("password", "oauth-app", "oauth-delegated", "none"),
        help="how the upstream mailbox authenticates",
    )
    parser.add_argument("--tenant", metavar="ID", help="the Entra tenant for OAuth")
    parser.add_argument("--client-id", metavar="ID", help="the Entra application for OAuth")
    parser.add_argument("--authority", metavar="URL", help="the OAuth authority")
    parser.add_argument(
        "--secret-expires",
        metavar="YYYY-MM-DD",
        help="when the app's client secret expires (--auth oauth-app): warned about 30 days ahead",
    )
    parser.add_argument(
        "--sender", metavar="ADDRESS", help="rewrite the envelope sender (and a foreign From) to this mailbox"
    )
    parser.add_argument(
        "--device-sender",
        metavar="DEVICE=ADDRESS",
        action="append",
        default=[],
        help="a sender per device (repeatable): DEVICE is an address, a network or login:NAME, ADDRESS the "
        "mailbox or alias its mail goes out as; other devices use --sender (or the mailbox)",
    )
    parser.add_argument(
        "--rate", metavar="N", help="messages a minute sent upstream per mailbox (default 30; 0 = no pacing)"
    )
    parser.add_argument("--connections", metavar="N", help="upstream connections at once (default 3)")
    parser.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="LOGIN",
        help="a device account that may authenticate (repeatable); its password is read from the keyring "
        "profile device-LOGIN (relaywizard secret set --profile device-LOGIN)",
    )
    parser.add_argument(
        "--auth-network",
        action="append",
        default=[],
        metavar="CIDR",
        help="networks where device accounts may authenticate without TLS (repeatable)",
    )
    parser.add_argument(
        "--recipient-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="internal-only mode: only these domains may be mailed (repeatable)",
    )
    parser.add_argument(
        "--bare-lf",
        choices=("refuse", "normalize"),
        help="a message whose lines end with LF alone: refuse it (the default; such line ends are how SMTP "
        "smuggling works) or normalize them to CRLF, for devices whose software sends them; the data "
        "still ends only at CRLF.CRLF",
    )
    parser.add_argument("--tls-cert", metavar="PEM", help="certificate chain for STARTTLS offered to devices")
    parser.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    parser.add_argument(
        "--graph",
        nargs="?",
        const="",  # --graph alone: Microsoft's Graph (relay/config.py DEFAULT_GRAPH_URL)
        metavar="URL",
        help="deliver through Microsoft Graph's sendMail instead of SMTP, for tenants that turn SMTP AUTH "
        "off: as the mailbox --user, with an app-only token (--auth oauth-app, application permissions "
        "Mail.Send and, for messages over about 3 MB, which go as a draft with uploaded attachments, "
        "Mail.ReadWrite; scope https://graph.microsoft.com/.default); URL is Graph's base, by default "
        "https://graph.microsoft.com/v1.0",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "relay",
        help="run the relay in the foreground, headless",
        description="Accept mail from allowed office devices, keep each message on disk before answering "
        "250, and forward it to Microsoft 365 with TLS and authentication, retrying what fails. Ctrl-C or "
        "SIGTERM stops it cleanly: messages under way finish or stay queued. Exit code 2 with one sentence "
        "when the settings are unusable (port in use, unreadable spool, missing secret).",
    )
    add_relay_options(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every session and delivery")
    parser.set_defaults(handler=run)


def _int(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{option}: '{text}' is not a whole number.") from None


def options_from(args: argparse.Namespace) -> RelayOptions:
    from relaywizard.relay.config import RelayOptions

    return RelayOptions(
        listen=args.listen,
        allow=tuple(args.allow),
        spool=args.spool,
        upstream=args.upstream,
        tls=args.tls,
        ca_file=args.ca_file,
        user=args.user,
        profile=args.profile,
        auth=args.auth,
        sender=args.sender,
        rate=_int(args.rate, "--rate"),
        connections=_int(args.connections, "--connections"),
        devices=tuple(args.device),
        auth_networks=tuple(args.auth_network),
        recipient_domains=tuple(args.recipient_domain),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        graph_url=args.graph,
        tenant=args.tenant,
        client_id=args.client_id,
        authority=args.authority,
        device_senders=tuple(args.device_sender),
        bare_lf=args.bare_lf,
    )


def load_config(args: argparse.Namespace) -> RelayConfig:
    from relaywizard.core import settings
    from relaywizard.relay.config import resolve

    paths = AppPaths.default()
    path = Path(args.config).expanduser() if args.config else paths.settings_file
    if args.config and not path.is_file():
        raise ConfigError(f"--config: there is no settings file at {path}.")
    return resolve(settings.load(path), options_from(args), paths)


def credentials_for(config: RelayConfig, *, secret_expires: date | None = None) -> Credentials | None:
    """The upstream credentials from the keyring, or None when the upstream takes no AUTH.

    ``secret_expires`` (``--secret-expires``) overrides the profile's ``app_valid_until``.
    """
    secret_expires = secret_expires or config.app_valid_until
    if config.auth == "none" or config.upstream.user is None:
        return None
    if config.auth in ("oauth-app", "oauth-delegated"):
        from relaywizard.cli.oauth import relay_credentials

        return relay_credentials(config, secret_expires=secret_expires)
    from relaywizard.core.secrets import SecretStore
    from relaywizard.relay.credentials import password_from_keyring

    return password_from_keyring(config, SecretStore())


def device_passwords(config: RelayConfig) -> dict[str, str]:
    """Each device account's password, read once from the keyring at start; held in memory only."""
    if not config.devices:
        return {}
    from relaywizard.core.secrets import SecretStore
    from relaywizard.relay.config import device_profile

    store = SecretStore()
    return {login: store.get(device_profile(login)) for login in config.devices}


def _log_event(event: ForwarderEvent) -> None:
    level = logging.WARNING if event.kind in ("dead", "auth_failed", "upstream_down") else logging.INFO
    logging.getLogger("relaywizard.relay").log(level, "%s", event.text)


def _date(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option}: '{text}' is not a date such as 2027-06-30.") from None


async def serve(
    config: RelayConfig,
    credentials: Credentials | None,
    *,
    devices: dict[str, str] | None = None,
    verbose: bool = False,
) -> None:
    from relaywizard.relay.service import RelayService

    # The forwarder logs every attempt at INFO itself; without -v only its events worth a warning show.
    service = RelayService(config, credentials, devices, on_event=None if verbose else _log_event)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await service.start()
    if service.control_error:  # mail still flows without it; only the tray and `queue retry` miss it
        print(f"relaywizard relay: no control channel: {service.control_error}", file=sys.stderr, flush=True)
    relay = service.relay
    host, port = relay.address
    upstream = config.upstream
    allowed = ", ".join(map(str, config.allow)) or "authenticated devices only"
    target = (
        f"Microsoft Graph at {config.graph_url}"
        if config.graph_url is not None
        else f"{upstream.host}:{upstream.port} ({upstream.tls}"
    )
    print(
        f"relaywizard relay: listening on {host}:{port} for {allowed}; "
        f"forwarding to {target}{', as ' + upstream.user if upstream.user else ''}"
        f"{')' if config.graph_url is None else ''}; spool {config.spool}",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        print("relaywizard relay: stopping", file=sys.stderr, flush=True)
        await service.stop()
        counts = relay.counts()
        queued = sum(counts.get(state, 0) for state in counts if str(state) in ("queued", "sending"))
        print(f"relaywizard relay: stopped; {queued} message(s) stay queued", file=sys.stderr, flush=True)


def configure_logging(verbose: bool) -> None:
    """The relay's log on standard error: warnings, or with -v every session and delivery."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's own per-command chatter


def run(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    config = load_config(args)
    credentials = credentials_for(config, secret_expires=_date(args.secret_expires, "--secret-expires"))
    devices = device_passwords(config)
    asyncio.run(serve(config, credentials, devices=devices, verbose=args.verbose))
    return 0
