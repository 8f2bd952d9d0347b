"""The core layers never import Qt: the CLI and the headless relay run without a display or PySide6."""

from __future__ import annotations

import subprocess
import sys

CORE_PACKAGES = ("core", "cli", "diagnostics", "relay", "auth")

PROBE = """
import importlib, pkgutil, sys
import relaywizard
names = []
for package in sys.argv[1:]:
    module = importlib.import_module("relaywizard." + package)
    names.append(module.__name__)
    for info in pkgutil.walk_packages(module.__path__, module.__name__ + "."):
        importlib.import_module(info.name)
        names.append(info.name)
qt = sorted(m for m in sys.modules if m.split(".")[0] in {"PySide6", "shiboken6", "qasync"})
print(len(names), qt)
"""


def test_core_layers_load_no_qt() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *CORE_PACKAGES], capture_output=True, text=True, check=True
    )
    count, qt_modules = result.stdout.split(" ", 1)
    assert int(count) >= len(CORE_PACKAGES) + 3
    assert qt_modules.strip() == "[]", qt_modules


def test_the_cli_entry_point_loads_no_qt() -> None:
    probe = (
        "import sys; from relaywizard.cli.main import main; main(['--help']) if False else None; "
        "print(sorted(m for m in sys.modules if m.startswith(('PySide6', 'shiboken6'))))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
