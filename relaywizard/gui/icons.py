"""The SVG icons shipped in relaywizard.resources (crisp at any scale)."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QIcon

if TYPE_CHECKING:
    from relaywizard.diagnostics.model import Status

# Qt reads icons from files: those in the package's folder (where pip and PyInstaller put package data),
# found without importlib.resources, which costs a dozen imports before the first window.
_FOLDER = Path(str(import_module("relaywizard.resources").__file__)).parent / "icons"


def path(name: str) -> Path:
    """The file of icon ``name`` (``pass``, ``warn``, ``fail``, ``skip``, ``running``, ...)."""
    return _FOLDER / f"{name}.svg"


def icon(name: str) -> QIcon:
    return QIcon(str(path(name)))


def status_icon(status: Status | None) -> QIcon:
    """The icon of a check's status; None: still waiting."""
    return icon(str(status) if status is not None else "pending")
