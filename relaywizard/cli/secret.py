"""``relaywizard secret set|delete --profile NAME``: secrets go to the OS keyring, never to a file."""

from __future__ import annotations

import argparse
import getpass
import sys

from relaywizard.core.errors import UsageError
from relaywizard.core.secrets import SERVICE, SecretStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "secret",
        help="store or delete a profile's secret in the OS keyring",
        description=f"Store or delete the secret of a profile (a mailbox password, or an app's client "
        f"secret) in the operating system's keyring, under the service name '{SERVICE}'.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    store = actions.add_parser(
        "set",
        help="read a secret from standard input and store it",
        description="Read the secret from standard input (one line; a terminal prompts without echo) "
        "and store it in the OS keyring.",
    )
    store.add_argument("--profile", required=True, metavar="NAME", help="the profile the secret belongs to")
    store.set_defaults(handler=run_set)
    remove = actions.add_parser(
        "delete", help="delete a stored secret", description="Delete a stored secret."
    )
    remove.add_argument("--profile", required=True, metavar="NAME", help="the profile the secret belongs to")
    remove.set_defaults(handler=run_delete)


def read_secret(prompt: str) -> str:
    """One secret from standard input: hidden prompt on a terminal, else the first line of the stream."""
    if sys.stdin is None:
        raise UsageError("No standard input to read the secret from.")
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def run_set(args: argparse.Namespace) -> int:
    secret = read_secret(f"Secret for profile '{args.profile}': ").removesuffix("\r")
    if not secret:
        raise UsageError(
            "No secret was given on standard input; nothing was stored.",
            hint="Pipe it in, e.g. printf '%s' \"$SECRET\" | "
            f"relaywizard secret set --profile {args.profile}",
        )
    store = SecretStore()
    store.set(args.profile, secret)
    print(f"Stored the secret of profile '{args.profile}' in {store.backend_name()}.")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    store = SecretStore()
    store.delete(args.profile)
    print(f"Deleted the secret of profile '{args.profile}' from {store.backend_name()}.")
    return 0
