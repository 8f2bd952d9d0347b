"""Commands that open a window: ``relaywizard`` / ``relaywizard wizard``.

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
    wizard.set_defaults(handler=run_wizard)


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

    return run()
