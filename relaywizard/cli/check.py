"""``relaywizard check DOMAIN``: DNS and a staged SMTP test from this side of the network (contract.md)."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from relaywizard.cli import report as human
from relaywizard.cli.secret import read_secret
from relaywizard.core import validate
from relaywizard.core.errors import UsageError
from relaywizard.core.secrets import SecretStore
from relaywizard.diagnostics.model import AUTH_KINDS, METHODS, Group, Method, Report, Target

if TYPE_CHECKING:
    from relaywizard.auth.source import TokenSource

EXIT_OK, EXIT_FAILED = 0, 1
T = TypeVar("T")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "check",
        help="DNS and SMTP diagnostics for a domain and a sending method",
        description="Check a domain's DNS (MX, SPF, DKIM, DMARC, autodiscover) and test the SMTP endpoint of "
        "a sending method stage by stage (connect, greeting, EHLO, STARTTLS, certificate, AUTH, MAIL FROM, "
        "RCPT TO, and with --send DATA), from this machine's side of the network. Exit code: 0 no check "
        "failed (warnings allowed), 1 at least one check failed, 2 bad usage or configuration.",
    )
    parser.add_argument("domain", metavar="DOMAIN", help="the mail domain, e.g. contoso.com")
    parser.add_argument("--method", choices=METHODS, default="smtp-auth", help="the sending method to test")
    parser.add_argument(
        "--dns-server",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="ask this resolver instead of the system's (repeatable)",
    )
    parser.add_argument("--smtp-host", metavar="HOST", help="override the endpoint the method implies")
    parser.add_argument("--smtp-port", metavar="N", help="override the port the method implies")
    parser.add_argument(
        "--ca-file", metavar="PEM", help="trust these CA certificates as well as the system's"
    )
    parser.add_argument("--user", metavar="ADDRESS", help="the mailbox to authenticate as")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument(
        "--profile",
        metavar="NAME",
        help="take the secret from this keyring profile: the password, or with --auth oauth-app the client "
        "secret; with --auth oauth-delegated, the saved sign-in (relaywizard signin --profile NAME)",
    )
    secret.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the secret (password, or oauth-app client secret) from standard input",
    )
    parser.add_argument(
        "--auth",
        choices=AUTH_KINDS,
        default="password",
        help="how --user authenticates: a password, an app-only token (client credentials) or a signed-in "
        "user's token (XOAUTH2 for both; a first delegated sign-in prints a device code on standard error)",
    )
    parser.add_argument("--tenant", metavar="ID", help="the Entra tenant for OAuth")
    parser.add_argument("--client-id", metavar="ID", help="the Entra application for OAuth")
    parser.add_argument(
        "--authority",
        metavar="URL",
        help="the OAuth authority (default https://login.microsoftonline.com/<tenant>); --ca-file is trusted "
        "for it too",
    )
    parser.add_argument(
        "--from", dest="mail_from", metavar="ADDRESS", help="envelope sender of the MAIL FROM test"
    )
    parser.add_argument(
        "--to", dest="rcpt_to", metavar="ADDRESS", help="envelope recipient of the RCPT TO test"
    )
    parser.add_argument(
        "--send",
        action="store_true",
        help="really send a short test message (DATA); without it the session ends after RCPT TO with RSET",
    )
    parser.add_argument("--relay-ip", metavar="IP", help="the office's public IP, checked against SPF")
    parser.add_argument("--source-ip", metavar="IP", help="connect from this local address (a LAN interface)")
    parser.add_argument("--helo", metavar="NAME", help="the name to send in EHLO (default: this machine's)")
    parser.add_argument("--only", choices=("dns", "smtp"), help="run only one group of checks")
    parser.add_argument("--timeout", default="10", metavar="SECONDS", help="limit for each network step")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the report")
    parser.set_defaults(handler=run)


def _usage(exc: ValueError, option: str) -> UsageError:
    return UsageError(f"{option}: {exc}")


def _opt(value: str | None, check: Callable[[str], T], option: str) -> T | None:
    """An optional option's value, validated; a bad one becomes a one-sentence usage error."""
    if value is None:
        return None
    try:
        return check(value)
    except ValueError as exc:
        raise _usage(exc, option) from None


def build_target(args: argparse.Namespace) -> Target:
    """Validate every option into a ``Target``; any bad value is one ``UsageError`` sentence."""
    from relaywizard.diagnostics.dns_resolver import parse_dns_server

    try:
        domain = validate.domain(args.domain)
    except ValueError as exc:
        raise _usage(exc, "DOMAIN") from None
    servers = []
    for text in args.dns_server:
        try:
            servers.append(parse_dns_server(text))
        except ValueError as exc:
            raise _usage(exc, "--dns-server") from None
    try:
        timeout = float(args.timeout)
    except ValueError:
        timeout = -1.0
    if not 0 < timeout <= 600:
        raise UsageError(f"--timeout: '{args.timeout}' is not a number of seconds between 0 and 600.")
    ca_file = _ca_file(args.ca_file)
    user = _opt(args.user, validate.email, "--user")
    token_source = None
    if args.auth == "password":
        secret = _secret(args)
    else:
        secret, token_source = None, _token_source(args, user, ca_file, timeout)
    if secret is not None and user is None:
        raise UsageError("A secret was given but no --user to authenticate as.")
    method: Method = args.method
    return Target(
        domain=domain,
        method=method,
        dns_servers=tuple(servers),
        smtp_host=_opt(args.smtp_host, validate.host, "--smtp-host"),
        smtp_port=_opt(args.smtp_port, validate.port, "--smtp-port"),
        ca_file=ca_file,
        user=user,
        auth=args.auth,
        secret=secret,
        token_provider=token_source.token if token_source else None,
        mail_from=_opt(args.mail_from, validate.email, "--from"),
        rcpt_to=_opt(args.rcpt_to, validate.email, "--to"),
        send=args.send,
        relay_ip=_opt(args.relay_ip, validate.ip_address, "--relay-ip"),
        source_address=_opt(args.source_ip, validate.ip_address, "--source-ip"),
        helo_name=args.helo,
        timeout=timeout,
    )


def _ca_file(text: str | None) -> Path | None:
    if text is None:
        return None
    path = Path(text).expanduser()
    try:
        content = path.read_text(errors="replace")
    except OSError as exc:
        raise UsageError(f"--ca-file: cannot read '{text}' ({exc.strerror or exc}).") from None
    if "-----BEGIN CERTIFICATE-----" not in content:
        raise UsageError(f"--ca-file: '{text}' holds no PEM certificate (-----BEGIN CERTIFICATE-----).")
    return path


def _secret(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        secret = read_secret("Password: ").removesuffix("\r")
        if not secret:
            raise UsageError("--password-stdin was given but standard input held no secret.")
        return secret
    if args.profile:
        return SecretStore().get(args.profile)
    return None


def _token_source(
    args: argparse.Namespace, user: str | None, ca_file: Path | None, timeout: float
) -> TokenSource:
    """For --auth oauth-*: the token source (the authority is first asked when the AUTH check runs)."""
    from relaywizard.cli import oauth

    if args.auth == "oauth-delegated" and args.password_stdin:
        raise UsageError("--password-stdin has no use with --auth oauth-delegated: nobody types a password.")
    settings = oauth.oauth_settings(
        kind=args.auth,
        tenant=args.tenant,
        client_id=args.client_id,
        authority=args.authority,
        user=user,
        ca_file=ca_file,
        profile=args.profile,
        timeout=max(timeout, 10.0),
    )
    # oauth-app: --profile / --password-stdin hold the client secret; oauth-delegated: --profile names
    # the saved sign-in, which the source reads from the keyring itself.
    client_secret = _secret(args) if args.auth == "oauth-app" else None
    return oauth.token_source(settings, client_secret)


def run(args: argparse.Namespace) -> int:
    target = build_target(args)
    only: Group | None = args.only
    report = asyncio.run(_sign_in_then_diagnose(target, only))
    # The interpreter's shutdown runs the garbage collector over every object still alive, ~30 ms with the
    # checks' modules loaded, for memory the system takes back anyway: frozen objects are left out of it.
    # (Unregistered first, so in-process callers such as tests register it once.)
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print(human.render(report, target, colour=human.use_colour(sys.stdout), profile=args.profile))
    return EXIT_FAILED if report.failed else EXIT_OK


async def _sign_in_then_diagnose(target: Target, only: Group | None) -> Report:
    """A delegated sign-in not saved yet happens first, so no SMTP session waits for a person."""
    if target.auth == "oauth-delegated" and only != "dns":
        from relaywizard.auth.source import TokenSource
        from relaywizard.cli.oauth import sign_in_if_needed

        source = getattr(target.token_provider, "__self__", None)  # build_target's source.token
        if isinstance(source, TokenSource):
            await sign_in_if_needed(source)
    return await diagnose(target, only)


async def diagnose(target: Target, only: Group | None) -> Report:
    """Run the checks. The SMTP session is begun first (``smtp_ahead``): the server's greeting is on its
    way while the checks' modules are imported, tens of milliseconds, a round trip on a WAN."""
    ahead = None
    if only != "dns":
        from relaywizard.diagnostics.smtp_ahead import SessionAhead

        ahead = SessionAhead(target)
        await asyncio.sleep(0)  # its first step: the SYN to an IP address goes out now (a name is looked up)
    from relaywizard.diagnostics.checks import start_run

    try:
        return await start_run(target, only, ahead=ahead).run()
    finally:
        if ahead is not None:
            ahead.discard()
