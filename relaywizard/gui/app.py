"""Starting the desktop interface: one QApplication, with qasync's event loop as the asyncio loop."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication, QWidget, QWizard


def make_app() -> QApplication:
    """The QApplication (created once), with the settings HiDPI and the OS palette need."""
    os.environ.setdefault("QT_API", "pyside6")
    from PySide6.QtWidgets import QApplication

    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    # HiDPI: Qt 6 scales by the screen's exact factor (rounding policy PassThrough) unless told otherwise;
    # setting it here would load ``Qt``, the namespace of every enum (~20 ms), before the window shows.
    app = QApplication(sys.argv[:1])
    app.setApplicationName("relaywizard")
    app.setApplicationDisplayName("relaywizard")
    app.setDesktopFileName("relaywizard")
    from relaywizard.gui.collector import MainThreadCollector

    MainThreadCollector(app)  # owned by the app; see collector.py for the crash it prevents
    return app


def run_wizard(exit_when_shown: bool = False) -> int:
    """Open the setup wizard on the qasync loop; returns the process exit code.

    The window comes first: asyncio and qasync (~40 ms of imports) are loaded once it is on screen, as the
    start page needs neither. ``exit_when_shown`` (``relaywizard wizard --exit-when-shown``, a smoke test
    for installs and bundles) returns as soon as the first page is on screen: see ``_report_shown``.
    """
    app = make_app()
    from relaywizard.gui.wizard import SetupWizard

    app.setQuitOnLastWindowClosed(False)  # the loop ends below, after the relay (if any) has stopped
    wizard = SetupWizard()
    results: list[int] = []  # `finished`, even if it came before the asyncio loop
    wizard.finished.connect(results.append)
    wizard.show()
    _until_exposed(app, wizard, limit=30.0 if exit_when_shown else 0.5)
    if exit_when_shown:
        return _report_shown(wizard)

    import asyncio

    import qasync

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    wizard.finished.connect(lambda _result: closed.set())
    if results:
        closed.set()

    async def until_closed() -> None:
        await closed.wait()
        from relaywizard.gui.pages.relay import RelayPage

        # The relay page stops its relay on `finished`; wait (bounded) until it has.
        pages = [wizard.page(i) for i in wizard.pageIds()]
        for page in pages:
            if isinstance(page, RelayPage):
                for _ in range(300):
                    if page.relay is None:
                        break
                    await asyncio.sleep(0.1)

    with loop:
        loop.run_until_complete(until_closed())
    return 0


def _report_shown(window: QWizard) -> int:
    """0 and the first page's title on standard output when ``window`` is on screen and its icon can be
    drawn (so Qt's SVG plugins load); 1 and one sentence on standard error when not."""
    handle = window.windowHandle()
    if handle is None or not handle.isExposed():
        print("relaywizard: the setup wizard did not appear on screen within 30 s.", file=sys.stderr)
        return 1
    image = window.windowIcon().pixmap(32, 32).toImage()
    if image.isNull() or image.pixelColor(16, 16).alpha() == 0:
        print(
            "relaywizard: the wizard's icons cannot be drawn (Qt's SVG plugins are missing).", file=sys.stderr
        )
        return 1
    page = window.currentPage()
    print(f"shown: {page.title() if page is not None else window.windowTitle()}")
    return 0


def _until_exposed(app: QApplication, window: QWidget, limit: float = 0.5) -> None:
    """Run Qt's events until ``window`` is on screen with its first frame painted (at most ``limit`` s)."""
    import time

    from PySide6.QtCore import QEventLoop, QTimer

    handle = window.windowHandle()
    deadline = time.monotonic() + limit
    wake = QTimer()  # the wait below returns at least this often
    wake.start(20)
    while handle is not None and not handle.isExposed() and time.monotonic() < deadline:
        app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)
    wake.stop()
    app.processEvents()  # what the first frame posted (updates, layouts)
