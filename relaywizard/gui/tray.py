"""The tray icon: the relay's state at a glance, its counts in the tooltip, and a menu for what to do next.

``Tray`` only shows what it is told (``show_status`` with a control-channel status, ``show_event`` with
one of its events) and says what the person asked for through signals; ``TrayController``
(``tray_controller.py``) feeds it from a running relay and carries the requests out. So every menu action
and state can be tested offscreen, with the tray's availability injected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from relaywizard.gui import icons

#: The relay's overall states (relay/control.py ``overall_state``, plus "stopped") and their icons.
STATE_ICONS = {
    "running": "tray-running",
    "delivering": "tray-delivering",
    "paused": "tray-paused",
    "errors waiting": "tray-errors",
    "stopped": "tray-stopped",
}
STATE_TEXT = {
    "running": "Relay running: nothing waiting",
    "delivering": "Relay delivering",
    "paused": "Relay paused: messages wait on disk",
    "errors waiting": "Relay running, with errors waiting",
    "stopped": "Relay not running",
}
#: Events that deserve a notification, with its title; the event's own text is the message.
NOTIFY = {
    "dead": ("A message could not be delivered", QSystemTrayIcon.MessageIcon.Warning),
    "auth_failed": ("Microsoft 365 refused the relay's sign-in", QSystemTrayIcon.MessageIcon.Critical),
    "upstream_down": ("Microsoft 365 cannot be reached", QSystemTrayIcon.MessageIcon.Warning),
    "expiry": ("A credential expires soon", QSystemTrayIcon.MessageIcon.Warning),
}
NOTIFY_MS = 10_000


def tray_available() -> bool:
    return QSystemTrayIcon.isSystemTrayAvailable()


def count_text(status: dict[str, Any]) -> str:
    """``3 queued · 41 delivered today · 1 failed``: the tooltip's second line."""
    counts = status.get("counts") or {}
    waiting = int(counts.get("queued", 0)) + int(counts.get("sending", 0))
    parts = [f"{waiting} queued", f"{int(status.get('delivered_today', 0))} delivered today"]
    failed = int(status.get("failed_today", 0))
    dead = int(counts.get("dead", 0))
    parts.append(f"{failed} failed today" + (f", {dead} to look at" if dead else ""))
    return " · ".join(parts)


class Tray(QObject):
    """The icon, its tooltip and menu, and notifications."""

    openWizard = Signal()
    openQueue = Signal()
    runDiagnostics = Signal()
    openSettings = Signal()
    pauseRequested = Signal(bool)  # True: pause, False: resume
    quitRequested = Signal()

    def __init__(self, available: Callable[[], bool] = tray_available, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.available = available
        self.state = "stopped"
        self.notifications: list[tuple[str, str]] = []  # (title, text) shown so far, newest last
        self.icon = QSystemTrayIcon(parent=self)
        self.menu = QMenu()
        self.status_action = self._action("Relay not running", None)
        self.status_action.setEnabled(False)
        self.counts_action = self._action("", None)
        self.counts_action.setEnabled(False)
        self.menu.addSeparator()
        self.queue_action = self._action("Open the queue and delivery log…", self.openQueue.emit)
        self.pause_action = self._action("Pause delivery", self._toggle_pause)
        self.diagnostics_action = self._action("Run the diagnostics…", self.runDiagnostics.emit)
        self.menu.addSeparator()
        self.wizard_action = self._action("Open the setup wizard…", self.openWizard.emit)
        self.settings_action = self._action("Settings…", self.openSettings.emit)
        self.menu.addSeparator()
        self.quit_action = self._action("Quit", self.quitRequested.emit)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        self.show_status({"state": "stopped"})

    def _action(self, text: str, slot: Callable[[], None] | None) -> QAction:
        action = self.menu.addAction(text)
        if slot is not None:
            action.triggered.connect(lambda _checked=False: slot())
        return action

    def show(self) -> bool:
        """Put the icon in the tray; False when this desktop has no tray."""
        if not self.available():
            return False
        self.icon.show()
        return True

    def hide(self) -> None:
        self.icon.hide()

    def state_icon(self) -> QIcon:
        return icons.icon(STATE_ICONS.get(self.state, "tray-stopped"))

    def show_status(self, status: dict[str, Any]) -> None:
        """Icon, tooltip and menu from a status (``{"state": ..., "counts": ..., ...}``)."""
        state = str(status.get("state") or "stopped")
        self.state = state if state in STATE_ICONS else "stopped"
        self.icon.setIcon(self.state_icon())
        headline = STATE_TEXT[self.state]
        running = self.state != "stopped"
        counts = count_text(status) if running else "Start it with 'relaywizard relay' or from the wizard."
        tooltip = f"relaywizard — {headline}\n{counts}"
        error = status.get("last_error")
        if running and self.state == "errors waiting" and isinstance(error, dict) and error.get("text"):
            tooltip += f"\nLast error: {error['text']}"
        self.icon.setToolTip(tooltip)
        self.status_action.setText(headline)
        self.counts_action.setText(counts)
        self.pause_action.setEnabled(running)
        self.pause_action.setText("Resume delivery" if self.state == "paused" else "Pause delivery")

    def show_event(self, event: dict[str, Any]) -> None:
        """Update from an event (which carries the state and counts after it) and notify if it matters."""
        if "state" in event:
            self.show_status(event)
        kind = str(event.get("event", ""))
        if kind in NOTIFY:
            title, level = NOTIFY[kind]
            self.notify(title, str(event.get("text") or ""), level)

    def notify(
        self,
        title: str,
        text: str,
        level: QSystemTrayIcon.MessageIcon = QSystemTrayIcon.MessageIcon.Information,
    ) -> None:
        self.notifications.append((title, text))
        self.icon.showMessage(title, text, level, NOTIFY_MS)

    def _toggle_pause(self) -> None:
        self.pauseRequested.emit(self.state != "paused")

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        # A click on the icon opens the window people come for; the menu is on the other button.
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
            self.openQueue.emit()
