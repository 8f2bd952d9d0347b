"""The SVG icons shipped in relaywizard.resources (crisp at any scale)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from PySide6.QtGui import QIcon

from relaywizard.diagnostics.model import Status


def path(name: str) -> Path:
    """The file of icon ``name`` (``pass``, ``warn``, ``fail``, ``skip``, ``running``, ...)."""
    return Path(str(resources.files("relaywizard.resources") / "icons" / f"{name}.svg"))


def icon(name: str) -> QIcon:
    return QIcon(str(path(name)))


def status_icon(status: Status | None) -> QIcon:
    """The icon of a check's status; None: still waiting."""
    return icon(str(status) if status is not None else "pending")
