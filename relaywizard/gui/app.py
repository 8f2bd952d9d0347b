"""Starting the desktop interface: one QApplication, with qasync's event loop as the asyncio loop."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication


def make_app() -> QApplication:
    """The QApplication (created once), with the settings HiDPI and the OS palette need."""
    os.environ.setdefault("QT_API", "pyside6")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication(sys.argv[:1])
    app.setApplicationName("relaywizard")
    app.setApplicationDisplayName("relaywizard")
    app.setDesktopFileName("relaywizard")
    return app


def run_wizard() -> int:
    """Open the setup wizard on the qasync loop; returns the process exit code."""
    app = make_app()
    import qasync

    from relaywizard.gui.wizard import SetupWizard

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    app.setQuitOnLastWindowClosed(False)  # the loop ends below, after the relay (if any) has stopped
    wizard = SetupWizard()
    closed = asyncio.Event()
    wizard.finished.connect(lambda _result: closed.set())
    wizard.show()

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
