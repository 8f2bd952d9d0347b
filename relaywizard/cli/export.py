"""``relaywizard export postfix``: the relay's settings as a Postfix relayhost configuration."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from relaywizard.core.errors import ConfigError, UsageError
from relaywizard.core.paths import AppPaths

if TYPE_CHECKING:
    from relaywizard.relay.postfix_export import PostfixTarget


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "export",
        help="write the relay's settings for another mail server",
        description="Write the relay's settings in another mail server's own format.",
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    postfix = kinds.add_parser(
        "postfix",
        help="a Postfix relayhost configuration for the same settings",
        description="Write a Postfix relayhost configuration for the relay's settings profile: a main.cf "
        "fragment (relayhost, TLS with certificate verification, SASL, sender rewriting to the mailbox, "
        "mynetworks from the allow-list, the message size limit), a sasl_passwd template (mode 0600; the "
        "password only with --include-secret) and a README for the admin. Options override the settings "
        "file as they do for relaywizard relay. Exit code 2 with one sentence when the settings are "
        "unusable or the folder already holds the files (without --force).",
    )
    postfix.add_argument("--out", metavar="DIR", required=True, help="the folder to write (made if missing)")
    postfix.add_argument("--config", metavar="FILE", help="settings file written by the wizard")
    postfix.add_argument(
        "--upstream", metavar="HOST:PORT", help="where mail is relayed (default: the profile's endpoint)"
    )
    postfix.add_argument(
        "--tls", choices=("starttls", "implicit", "none"), help="upstream transport security"
    )
    postfix.add_argument("--ca-file", metavar="PEM", help="CA certificates for the upstream (copied along)")
    postfix.add_argument("--user", metavar="ADDRESS", help="the upstream mailbox")
    postfix.add_argument(
        "--profile",
        metavar="NAME",
        help="the keyring profile holding the mailbox's password (--include-secret)",
    )
    postfix.add_argument("--sender", metavar="ADDRESS", help="rewrite every sender to this mailbox")
    postfix.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="CIDR",
        help="networks that may send (repeatable): Postfix's mynetworks",
    )
    postfix.add_argument(
        "--postfix-dir",
        metavar="DIR",
        default="/etc/postfix",
        help="where the files will live on the Postfix server, as main.cf names them (default /etc/postfix)",
    )
    postfix.add_argument(
        "--include-secret",
        action="store_true",
        help="write the password from the keyring profile into sasl_passwd instead of a placeholder",
    )
    postfix.add_argument("--force", action="store_true", help="replace files already in the folder")
    postfix.set_defaults(handler=run_postfix)


def target_from(args: argparse.Namespace) -> tuple[PostfixTarget, str | None]:
    """The export's settings (the settings file's relay profile, options on top) and the keyring profile."""
    from relaywizard.core import m365, settings, validate
    from relaywizard.relay.config import RelayOptions, resolve
    from relaywizard.relay.postfix_export import PostfixTarget, method_for

    paths = AppPaths.default()
    path = Path(args.config).expanduser() if args.config else paths.settings_file
    if args.config and not path.is_file():
        raise ConfigError(f"--config: there is no settings file at {path}.")
    loaded = settings.load(path)
    profile = loaded.relay_profile()
    if profile is None and not args.upstream:
        raise ConfigError(
            f"There is no settings profile to export in {path}: run the setup wizard (relaywizard), "
            "or give --upstream HOST:PORT (with --user and --profile to sign in).",
        )
    upstream = args.upstream
    if profile is not None and profile.method != "smtp-auth" and not upstream:
        # Direct Send and connectors go to the domain's MX host on 25; the relay's defaults are SMTP AUTH's.
        host = profile.smtp_host or m365.mx_endpoint_for(profile.domain)
        upstream = validate.format_host_port(host, profile.smtp_port or m365.MX_PORT)
    options = RelayOptions(
        allow=tuple(args.allow),
        upstream=upstream,
        tls=args.tls,
        ca_file=args.ca_file,
        user=args.user,
        profile=args.profile,
        sender=args.sender,
    )
    config = resolve(loaded, options, paths)
    method = method_for(profile.method if profile else None, config)
    return PostfixTarget.from_config(config, method), config.profile


def run_postfix(args: argparse.Namespace) -> int:
    from relaywizard.relay.postfix_export import generate, write_export

    target, keyring_profile = target_from(args)
    password: str | None = None
    if args.include_secret:
        if not target.signs_in or target.oauth or keyring_profile is None:
            raise UsageError(
                "--include-secret has nothing to include: only password sign-in puts a secret in sasl_passwd."
            )
        from relaywizard.core.secrets import SecretStore

        password = SecretStore().get(keyring_profile)
    files = generate(target, postfix_dir=args.postfix_dir, password=password)
    for path in write_export(files, Path(args.out), force=args.force):
        print(path)
    return 0
