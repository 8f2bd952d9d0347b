"""Opening the wizard builds the start page only: the other pages, and what they import, come when needed.

bench/startup times this (process start to the window shown, against a bare QWizard); these tests keep the
reason it is fast from quietly going away.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard
from pytestqt.qtbot import QtBot

from relaywizard.core.paths import AppPaths
from relaywizard.gui.pages.capabilities import CapabilitiesPage
from relaywizard.gui.pages.relay import RelayPage
from relaywizard.gui.pages.start import StartPage
from relaywizard.gui.pages.tenant import TenantPage
from relaywizard.gui.services import Services
from relaywizard.gui.wizard import PageId, SetupWizard

PROBE = """
import json, sys
from relaywizard.gui.app import make_app
app = make_app()
from relaywizard.gui.wizard import SetupWizard
wizard = SetupWizard()
wizard.show()
app.processEvents()
print(json.dumps({"pages": wizard.pageIds(), "modules": sorted(sys.modules)}))
"""

#: Modules the first window must not wait for (each costs milliseconds to tens of milliseconds).
LATER = (
    "asyncio",
    "qasync",
    "ssl",
    "email",
    "relaywizard.core.advisor",
    "relaywizard.core.handover",
    "relaywizard.core.settings",
    "relaywizard.diagnostics",
    "relaywizard.relay",
    "relaywizard.gui.widgets",
    "relaywizard.gui.diagnostics_view",
    "relaywizard.gui.export",
    "relaywizard.gui.pages.capabilities",
    "relaywizard.gui.pages.tenant",
    "relaywizard.gui.pages.credentials",
    "relaywizard.gui.pages.tests",
    "relaywizard.gui.pages.summary",
    "relaywizard.gui.pages.relay",
)


def test_the_first_window_imports_only_the_start_page(tmp_path: Path) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", RELAYWIZARD_HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    shown = json.loads(result.stdout.splitlines()[-1])
    assert shown["pages"] == [PageId.START]
    early = [m for m in shown["modules"] if m in LATER or m.startswith(tuple(f"{name}." for name in LATER))]
    assert early == []


CLOSE = """
import asyncio, sys
from PySide6.QtCore import QTimer
from relaywizard.gui import app
from relaywizard.gui.wizard import SetupWizard

show = SetupWizard.show
def show_then_close(wizard):
    show(wizard)
    QTimer.singleShot(int(sys.argv[1]), wizard.reject)
SetupWizard.show = show_then_close
code = app.run_wizard()
print(code, type(asyncio.get_event_loop()).__module__)
"""


@pytest.mark.parametrize("after_ms", [0, 300], ids=["before-the-asyncio-loop", "on-the-asyncio-loop"])
def test_the_application_ends_when_the_wizard_is_closed(tmp_path: Path, after_ms: int) -> None:
    """The window shows before asyncio and qasync load: a close that early still ends the application."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", RELAYWIZARD_HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", CLOSE, str(after_ms)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert result.stdout.split() == ["0", "qasync"]


def make_wizard(qtbot: QtBot, tmp_path: Path) -> SetupWizard:
    wizard = SetupWizard(services=Services(paths=AppPaths.under(tmp_path)))
    qtbot.addWidget(wizard)
    return wizard


def test_next_makes_the_page_it_leads_to(qtbot: QtBot, tmp_path: Path) -> None:
    wizard = make_wizard(qtbot, tmp_path)
    wizard.show()
    assert isinstance(wizard.currentPage(), StartPage)
    assert wizard.pageIds() == [PageId.START]
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.NextButton), Qt.MouseButton.LeftButton)
    assert wizard.currentId() == PageId.CAPABILITIES
    assert isinstance(wizard.currentPage(), CapabilitiesPage)
    assert wizard.pageIds() == [PageId.START, PageId.CAPABILITIES]


def test_asking_for_a_page_or_starting_on_it_makes_it_once(qtbot: QtBot, tmp_path: Path) -> None:
    wizard = make_wizard(qtbot, tmp_path)
    relay = wizard.page(PageId.RELAY)
    assert isinstance(relay, RelayPage)
    assert wizard.page(PageId.RELAY) is relay
    assert wizard.page(99) is None  # not a step
    wizard.setStartId(PageId.TENANT)
    wizard.show()
    assert isinstance(wizard.currentPage(), TenantPage)
    assert sorted(wizard.pageIds()) == [PageId.START, PageId.TENANT, PageId.RELAY]
