"""The tray's smaller windows: the diagnostics of the relay's upstream, and the tray's settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QDialog, QDialogButtonBox, QLabel, QPushButton, QVBoxLayout, QWidget

from relaywizard.core.autostart import Autostart
from relaywizard.core.errors import RelayWizardError
from relaywizard.diagnostics.model import Target
from relaywizard.diagnostics.runner import DiagnosticsRun
from relaywizard.gui import icons
from relaywizard.gui.diagnostics_view import DiagnosticsController, DiagnosticsView


class DiagnosticsWindow(QWidget):
    """The checks of the relay's own upstream and domain, live, with Cancel and Run again."""

    def __init__(self, start_run: Callable[[Target], DiagnosticsRun], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("relaywizard — diagnostics of the relay's upstream")
        self.setWindowIcon(icons.icon("relaywizard"))
        self.resize(820, 620)
        self.target: Target | None = None
        self.intro = QLabel()
        self.intro.setWordWrap(True)
        self.controller = DiagnosticsController(start_run, self)
        self.view = DiagnosticsView(self.controller)
        self.view.runAgainRequested.connect(self.run_again)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 16)
        layout.setSpacing(12)
        layout.addWidget(self.intro)
        layout.addWidget(self.view, 1)

    def start(self, target: Target | None) -> None:
        self.target = target
        if target is None:
            self.intro.setText(
                "The relay has no mailbox or sender address, so there is no domain to check. "
                "Set the sender in the setup wizard's relay page, then run the diagnostics again."
            )
            self.view.setVisible(False)
            return
        self.view.setVisible(True)
        where = f"{target.smtp_host}:{target.smtp_port}"
        who = f", signing in as {target.user}" if target.user else ""
        self.intro.setText(f"DNS of {target.domain} and the relay's upstream {where}{who}.")
        self.controller.start(target)

    def run_again(self) -> None:
        if self.target is not None:
            self.controller.start(self.target)


class SettingsDialog(QDialog):
    """Start at login, and where the relay's settings live (they are changed in the wizard)."""

    openWizard = Signal()

    def __init__(self, autostart: Autostart, settings_file: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("relaywizard — tray settings")
        self.setWindowIcon(icons.icon("relaywizard"))
        self.autostart = autostart
        self.setMinimumWidth(self.fontMetrics().horizontalAdvance("m") * 40)
        self.start_at_login = QCheckBox("&Start the relay's tray icon when I log in")
        self.start_at_login.setAccessibleName("Start at login")
        self.where = QLabel()
        self.where.setWordWrap(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setVisible(False)
        settings = QLabel(
            f"The relay's settings are in {settings_file}. Change them with the setup wizard, which tests "
            "them before they are saved."
        )
        settings.setWordWrap(True)
        self.wizard_button = QPushButton("Open the setup &wizard…")
        self.wizard_button.clicked.connect(self.openWizard.emit)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 16)
        layout.setSpacing(10)
        layout.addWidget(self.start_at_login)
        layout.addWidget(self.where)
        layout.addWidget(self.error)
        layout.addSpacing(8)
        layout.addWidget(settings)
        layout.addWidget(self.wizard_button)
        layout.addWidget(buttons)
        self.refresh()
        self.start_at_login.toggled.connect(self._toggled)

    def refresh(self) -> None:
        try:
            enabled = self.autostart.is_enabled()
        except RelayWizardError as exc:
            self.error.setText(exc.one_line())
            self.error.setVisible(True)
            enabled = False
        self.start_at_login.blockSignals(True)
        self.start_at_login.setChecked(enabled)
        self.start_at_login.blockSignals(False)
        self.where.setText(f"At login this runs the tray from {self.autostart.where}.")

    def _toggled(self, enabled: bool) -> None:
        try:
            self.autostart.set_enabled(enabled)
        except RelayWizardError as exc:
            self.error.setText(exc.one_line())
            self.error.setVisible(True)
        else:
            self.error.setText("")
            self.error.setVisible(False)
        self.refresh()
