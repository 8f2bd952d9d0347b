"""The ``relaywizard`` command: argparse over the core.

Each command lives in its own module with ``register(subparsers)``, which adds its parser and sets
``handler`` to a function ``(args) -> int``. Every ``RelayWizardError`` becomes one sentence on standard
error and exit code 2; nothing reaches the user as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from relaywizard import __version__
from relaywizard.core.errors import RelayWizardError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: The commands, in the order ``--help`` lists them.
COMMANDS = ("wizard", "check", "explain", "relay", "tray", "queue", "secret", "signin", "export")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with ``command`` (one of ``COMMANDS``), of that command only.

    Each command's module imports what that command needs, so a run of one command imports only its own
    module: ``relaywizard check`` is timed against dig and swaks, and other commands' imports cost it
    tens of milliseconds.
    """
    parser = argparse.ArgumentParser(
        prog="relaywizard",
        description="Set up, test and run mail from office devices through Microsoft 365. "
        "Without a command, opens the setup wizard.",
    )
    parser.add_argument("--version", action="version", version=f"relaywizard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (command,) if command in COMMANDS else COMMANDS:
        _register(name, sub)
    return parser


def _register(command: str, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Written-out imports rather than importlib by name, so a freezer (PyInstaller) finds every command.
    if command == "wizard":
        from relaywizard.cli import gui_commands

        gui_commands.register(sub)
    elif command == "tray":
        from relaywizard.cli import gui_commands

        gui_commands.register_tray(sub)
    elif command == "check":
        from relaywizard.cli import check

        check.register(sub)
    elif command == "explain":
        from relaywizard.cli import explain

        explain.register(sub)
    elif command == "relay":
        from relaywizard.cli import relay

        relay.register(sub)
    elif command == "queue":
        from relaywizard.cli import queue

        queue.register(sub)
    elif command == "secret":
        from relaywizard.cli import secret

        secret.register(sub)
    elif command == "signin":
        from relaywizard.cli import oauth

        oauth.register(sub)
    elif command == "export":
        from relaywizard.cli import export

        export.register(sub)


def _named_command(argv: Sequence[str]) -> str | None:
    """The command when the command line starts with one; None when it starts with an option (--help)."""
    return argv[0] if argv and argv[0] in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    # No arguments means the wizard: build only its parser, so a plain start imports no other command.
    parser = build_parser(_named_command(argv) if argv else "wizard")
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["wizard"])
    try:
        result: int = args.handler(args)
        return result
    except RelayWizardError as exc:
        print(f"relaywizard: {exc.one_line()}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("relaywizard: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
