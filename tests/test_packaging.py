"""The wheel ships every subpackage and the icons (pyproject lists packages explicitly)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "relaywizard").rglob("__init__.py")
    } | {"relaywizard.resources", "relaywizard.resources.icons"}
    assert found == listed


def test_every_icon_is_shipped_as_package_data() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*.svg" in data["relaywizard.resources.icons"]
    assert any((ROOT / "resources" / "icons").glob("*.svg"))
