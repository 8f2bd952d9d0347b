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
from relaywizard.cli import check, explain, gui_commands, queue, relay, secret
from relaywizard.core.errors import RelayWizardError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relaywizard",
        description="Set up, test and run mail from office devices through Microsoft 365. "
        "Without a command, opens the setup wizard.",
    )
    parser.add_argument("--version", action="version", version=f"relaywizard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    gui_commands.register(sub)
    check.register(sub)
    explain.register(sub)
    relay.register(sub)
    queue.register(sub)
    secret.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
