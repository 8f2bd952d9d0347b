"""Shared fixtures: the lab of real servers, a private Secret Service, and a clean CLI environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

# Qt must never try to open a real display in tests, and qasync must pick PySide6.
os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["QT_API"] = "pyside6"

import pytest

from tests.lab.keyring import SecretServiceSession
from tests.lab.process import LabError

if TYPE_CHECKING:
    from tests.lab.lab import Lab


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """Postfix + Dovecot + unbound on 127.0.0.1, started once per session (or reused when running)."""
    from tests.lab.lab import Lab

    try:
        running = Lab.acquire()
    except LabError as exc:
        pytest.fail(f"the test lab did not start: {exc}", pytrace=False)
    yield running
    running.release()


@pytest.fixture(scope="session")
def secret_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretServiceSession]:
    """An unlocked gnome-keyring Secret Service on a private D-Bus session bus."""
    session = SecretServiceSession(tmp_path_factory.mktemp("keyring")).start()
    yield session
    session.stop()


@pytest.fixture
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh RELAYWIZARD_HOME for one test: settings, spool and logs start empty."""
    home = tmp_path / "home"
    monkeypatch.setenv("RELAYWIZARD_HOME", str(home))
    return home
