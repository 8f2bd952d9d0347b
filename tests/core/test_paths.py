"""Folders come from platformdirs, or from RELAYWIZARD_HOME; nothing is computed at import time."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from relaywizard.core import paths


def test_home_variable_puts_everything_under_one_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAYWIZARD_HOME", str(tmp_path))
    p = paths.AppPaths.default()
    for folder in (p.config, p.data, p.state, p.cache, p.log):
        assert folder.is_relative_to(tmp_path)
    assert p.settings_file == tmp_path / "config" / "settings.toml"
    assert p.spool.is_relative_to(p.data)


def test_default_follows_the_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RELAYWIZARD_HOME", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    p = paths.AppPaths.default()
    assert p.config == tmp_path / "cfg" / "relaywizard"
    assert p.data == tmp_path / "share" / "relaywizard"


def test_importing_creates_nothing_and_holds_no_folder_globals(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RELAYWIZARD_HOME", raising=False)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    module = importlib.reload(paths)
    assert not any(isinstance(v, Path) for v in vars(module).values())
    assert list(tmp_path.iterdir()) == []
