"""Starting the desktop interface: one QApplication on qasync's event loop."""

from __future__ import annotations

import sys


def run_wizard() -> int:
    """Open the setup wizard; returns the process exit code."""
    print(
        "relaywizard: the setup wizard is not part of this version yet; use the command-line commands "
        "(see 'relaywizard --help').",
        file=sys.stderr,
    )
    return 2
