"""``relaywizard tray``: the relay with an icon in the system tray, or its window alone.

One instance per user: a second start asks the first to bring its window forward and exits. The tray
attaches to a relay already running for the spool (a service), or runs the relay in this process; either
way it follows it through the control channel (``tray_controller.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from PySide6.QtCore import QObject, QSocketNotifier, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QApplication, QWidget

from relaywizard.core.autostart import Autostart
from relaywizard.core.errors import DisplayUnavailable, RelayWizardError
from relaywizard.core.paths import AppPaths
from relaywizard.diagnostics.model import Target
from relaywizard.diagnostics.runner import DiagnosticsRun
from relaywizard.gui.queue_window import QueueWindow
from relaywizard.gui.tray import Tray, tray_available
from relaywizard.gui.tray_controller import ControlLink, Link, TrayController
from relaywizard.gui.tray_windows import DiagnosticsWindow, SettingsDialog
from relaywizard.relay.config import RelayConfig
from relaywizard.relay.service import RelayService

NO_TRAY = (
    "This desktop has no system tray: run 'relaywizard tray --window' for the relay's window alone, "
    "or run 'relaywizard relay' as a service (see the README)."
)


def instance_name(paths: AppPaths | None = None) -> str:
    """One tray per user and settings folder (``RELAYWIZARD_HOME`` gives a portable install its own)."""
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    folder = str((paths or AppPaths.default()).config)
    return f"relaywizard-tray-{uid}-{hashlib.sha256(folder.encode()).hexdigest()[:12]}"


class SingleInstance(QObject):
    """The first ``claim()`` of a name wins; later ones wake the first (``activated``) and get False."""

    activated = Signal()

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.server: QLocalServer | None = None

    def claim(self, wait_ms: int = 500) -> bool:
        other = QLocalSocket()
        other.connectToServer(self.name)
        if other.waitForConnected(wait_ms):
            other.write(b"show\n")
            other.waitForBytesWritten(wait_ms)
            other.disconnectFromServer()
            return False
        QLocalServer.removeServer(self.name)  # a socket left by a crashed instance
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            return True  # cannot guard against a second instance here; run anyway
        server.newConnection.connect(self._woken)
        self.server = server
        return True

    def _woken(self) -> None:
        assert self.server is not None
        while (connection := self.server.nextPendingConnection()) is not None:
            connection.disconnected.connect(connection.deleteLater)
            self.activated.emit()

    def release(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def _start_run(target: Target) -> DiagnosticsRun:
    from relaywizard.diagnostics.checks import start_run

    return start_run(target)


class TrayApp(QObject):
    """The tray, its windows, and the relay (attached or in-process); ``await run()`` until Quit."""

    def __init__(
        self,
        config: RelayConfig,
        *,
        start_relay: Callable[[], Awaitable[RelayService]],
        window_only: bool = False,
        available: Callable[[], bool] = tray_available,
        link: Link | None = None,
        autostart: Autostart | None = None,
        paths: AppPaths | None = None,
        start_run: Callable[[Target], DiagnosticsRun] = _start_run,
        open_wizard: Callable[[], QWidget] | None = None,
        dns_servers: tuple[tuple[str, int], ...] = (),
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        app = QApplication.instance()
        if isinstance(app, QApplication):  # the tray lives on when its windows close
            app.setQuitOnLastWindowClosed(False)
        self.config = config
        self._start_relay = start_relay
        self.window_only = window_only
        self.paths = paths or AppPaths.default()
        self.autostart = autostart
        self._start_run = start_run
        self._open_wizard = open_wizard
        self.dns_servers = dns_servers
        """Resolvers for the diagnostics (empty: the system's)."""
        self.tray = Tray(available, self)
        self.window = QueueWindow()
        self.controller = TrayController(
            self.tray, self.window, link or ControlLink(config.spool), parent=self
        )
        self.service: RelayService | None = None
        self.diagnostics: DiagnosticsWindow | None = None
        self.settings: SettingsDialog | None = None
        self.wizard: QWidget | None = None
        self.quitting = asyncio.Event()
        self.tray.openWizard.connect(self.open_wizard)
        self.tray.runDiagnostics.connect(self.run_diagnostics)
        self.tray.openSettings.connect(self.open_settings)
        self.tray.quitRequested.connect(self.quitting.set)
        if window_only:  # the window is the whole program then: closing it quits
            self.window.closed.connect(self.quitting.set)

    async def start(self) -> None:
        """Attach to the relay of the spool, or start it here; then show the icon (or the window)."""
        if not await self._relay_answers():
            self.service = await self._start_relay()
            if self.service.control_error:
                self.window.say(f"The tray cannot follow the relay: {self.service.control_error}")
        self.controller.start()
        if self.window_only or not self.tray.show():
            self.controller.open_queue()

    async def _relay_answers(self) -> bool:
        from relaywizard.relay.control_client import RelayNotRunning

        try:
            await self.controller.link.request("status")
        except RelayNotRunning:
            return False
        return True

    def describe(self) -> str:
        """One line for the terminal: what the tray runs or follows."""
        if self.service is None:
            return f"relaywizard tray: following the relay already running for the spool {self.config.spool}"
        host, port = self.service.relay.address
        return (
            f"relaywizard tray: relay listening on {host}:{port}; forwarding to "
            f"{self.config.upstream.host}:{self.config.upstream.port}; spool {self.config.spool}"
        )

    async def run(self) -> None:
        await self.start()
        await self.quitting.wait()

    async def shutdown(self) -> None:
        await self.controller.stop()
        self.tray.hide()
        for window in (self.window, self.diagnostics, self.settings, self.wizard):
            if window is not None:
                window.close()
        if self.service is not None:
            await self.service.stop()
            self.service = None

    # -- menu actions -------------------------------------------------------------------------------

    def bring_forward(self) -> None:
        self.controller.open_queue()

    def open_wizard(self) -> None:
        if self.wizard is None:
            if self._open_wizard is not None:
                self.wizard = self._open_wizard()
            else:
                from relaywizard.gui.wizard import SetupWizard

                self.wizard = SetupWizard()
        self.wizard.show()
        self.wizard.raise_()

    def run_diagnostics(self) -> None:
        from relaywizard.relay.service import diagnostics_target

        if self.diagnostics is None:
            self.diagnostics = DiagnosticsWindow(self._start_run)
        self.diagnostics.show()
        self.diagnostics.raise_()
        credentials = self.service.credentials if self.service is not None else None
        target = diagnostics_target(self.config, credentials, dns_servers=self.dns_servers)
        if target is not None and credentials is not None and target.token_provider is None:
            # the password is only known to an in-process relay; read it off the GUI thread
            self.controller.spawn(self._diagnose_with_password(target))
            return
        self.diagnostics.start(target)

    async def _diagnose_with_password(self, target: Target) -> None:
        from dataclasses import replace

        from relaywizard.relay.service import password_for

        assert self.diagnostics is not None
        assert self.service is not None
        secret = await password_for(self.service.credentials)
        self.diagnostics.start(replace(target, secret=secret))

    def open_settings(self) -> None:
        if self.settings is None:
            self.settings = SettingsDialog(
                self.autostart or Autostart.for_platform(), self.paths.settings_file
            )
            self.settings.openWizard.connect(self.open_wizard)
        self.settings.refresh()
        self.settings.show()
        self.settings.raise_()


class SignalWake(QObject):
    """Calls ``quit`` on SIGINT or SIGTERM, at once even while Qt sleeps in its event loop.

    Python runs a signal's handler only when it next runs Python code, and a Qt program can sleep in C++
    for as long as nothing happens. So the signal also writes a byte to a socket pair that Qt watches (the
    usual way for Qt programs): that wakes the loop, and Python runs the handler.
    """

    def __init__(self, quit: Callable[[], None], loop: asyncio.AbstractEventLoop) -> None:
        import socket

        super().__init__()
        self._handlers = {
            signum: signal.signal(signum, lambda *_: loop.call_soon_threadsafe(quit))
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        self._reader, self._writer = socket.socketpair()
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._previous = signal.set_wakeup_fd(self._writer.fileno())
        self.notifier = QSocketNotifier(self._reader.fileno(), QSocketNotifier.Type.Read, self)
        self.notifier.activated.connect(self._drain)

    def _drain(self) -> None:  # Python has run the handler by now; the bytes only woke Qt
        with contextlib.suppress(OSError):
            self._reader.recv(64)

    def close(self) -> None:
        self.notifier.setEnabled(False)
        signal.set_wakeup_fd(self._previous)
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._reader.close()
        self._writer.close()


def run_tray(
    config: RelayConfig, *, window_only: bool, start_relay: Callable[[], Awaitable[RelayService]]
) -> int:
    """The ``tray`` command: returns the exit code; raises a RelayWizardError for one-sentence failures."""
    from relaywizard.gui.app import make_app

    app = make_app()
    single = SingleInstance(instance_name())
    if not single.claim():
        print("relaywizard tray is already running; its window was brought forward.")
        return 0
    if not window_only and not tray_available():
        single.release()
        raise DisplayUnavailable(NO_TRAY)
    import qasync

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    failure: list[RelayWizardError] = []

    async def main() -> None:
        tray = TrayApp(config, start_relay=start_relay, window_only=window_only)
        single.activated.connect(tray.bring_forward)
        trays.append(tray)
        try:
            await tray.start()
            print(tray.describe(), file=sys.stderr, flush=True)
            await tray.quitting.wait()
        except RelayWizardError as exc:
            failure.append(exc)
        finally:
            await tray.shutdown()

    # SIGTERM (a logout, systemd) and Ctrl-C stop the relay cleanly, as Quit does.
    trays: list[TrayApp] = []
    wake = SignalWake(lambda: trays[0].quitting.set() if trays else None, loop)
    with loop, contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(main())
    wake.close()
    single.release()
    if failure:
        raise failure[0]
    return 0
