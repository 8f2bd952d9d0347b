"""Commands that open a window: ``relaywizard`` / ``relaywizard wizard``, and ``relaywizard tray``.

Qt is imported only here, only once a window is really wanted, and only when a display exists.
"""

from __future__ import annotations

import argparse
import os
import sys

from relaywizard.core.errors import DisplayUnavailable


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wizard = sub.add_parser(
        "wizard",
        help="open the setup wizard (the default without a command)",
        description="Open the setup wizard: from 'what are you setting up?' to a tested device.",
    )
    # Hidden: a smoke test for installs and bundles (tests/test_bundle.py, packaging/README.md). Exits 0
    # once the first page is on screen with its icons drawn, printing that page's title; 1 otherwise.
    wizard.add_argument("--exit-when-shown", action="store_true", help=argparse.SUPPRESS)
    wizard.set_defaults(handler=run_wizard)


def register_tray(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from relaywizard.cli.relay import add_relay_options

    tray = sub.add_parser(
        "tray",
        help="run the relay with a system-tray icon",
        description="Run the relay with an icon in the system tray that shows its state at a glance, and a "
        "window with the queue and the delivery log. When a relay (a service) already runs for the spool, "
        "the tray attaches to it instead of starting a second one. One tray per user: starting it again "
        "brings the first one's window forward.",
    )
    add_relay_options(tray)
    tray.add_argument(
        "--window",
        action="store_true",
        help="show the relay's window instead of a tray icon (for desktops without a system tray)",
    )
    tray.add_argument("-v", "--verbose", action="store_true", help="log every session and delivery")
    tray.set_defaults(handler=run_tray)


def display_available(environ: dict[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether a window can be shown: always on Windows and macOS; on X11/Wayland when a display is set."""
    env = os.environ if environ is None else environ
    platform = platform or sys.platform
    if platform.startswith(("win", "darwin")):
        return True
    if env.get("QT_QPA_PLATFORM", "").split(":")[0] in {"offscreen", "minimal", "vnc", "eglfs", "linuxfb"}:
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def require_display(what: str) -> None:
    if not display_available():
        raise DisplayUnavailable(
            f"No display is available to show the {what} (neither DISPLAY nor WAYLAND_DISPLAY is set).",
            hint="On this machine use the command-line commands instead (see 'relaywizard --help').",
        )


def run_wizard(args: argparse.Namespace) -> int:
    require_display("setup wizard")
    from relaywizard.gui.app import run_wizard as run

    return run(exit_when_shown=getattr(args, "exit_when_shown", False))


def run_tray(args: argparse.Namespace) -> int:
    require_display("relay's tray icon")
    import asyncio

    from relaywizard.cli.relay import configure_logging, credentials_for, device_passwords, load_config
    from relaywizard.relay.service import RelayService

    configure_logging(args.verbose)
    config = load_config(args)

    async def start_relay() -> RelayService:
        # keyring reads (D-Bus) off the GUI thread; a missing secret ends the tray with one sentence
        credentials = await asyncio.to_thread(credentials_for, config)
        devices = await asyncio.to_thread(device_passwords, config)
        service = RelayService(config, credentials, devices)
        await service.start()
        return service

    from relaywizard.gui.tray_app import run_tray as run

    return run(config, window_only=args.window, start_relay=start_relay)
