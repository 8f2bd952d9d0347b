"""Python's garbage collector, run on the GUI thread only.

A Qt object caught in a Python reference cycle is freed by whichever thread happens to trigger a
collection. When that is a worker thread (``asyncio.to_thread``, qasync's executor, a keyring or MSAL
call), Qt cannot unregister the object's timers from there, and the GUI thread later delivers a timer
event to freed memory: a segmentation fault in ``QTimerInfoList::activateTimers``. So the GUI turns
automatic collection off and collects from a timer on its own thread instead, as often as the
collector's own thresholds would have (the approach of pyqtgraph's ``GarbageCollector``).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

#: How often the GUI thread looks at the allocation counts (ms); a collection runs only when they are due.
INTERVAL_MS = 500


class MainThreadCollector(QObject):
    """While it exists, cyclic garbage is collected on the thread that created it, never on another."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self._thresholds = gc.get_threshold()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(interval_ms)
        gc.disable()

    def check(self) -> None:
        """Collect the generations whose allocation counts passed their thresholds, oldest first."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self._thresholds[generation]:
                gc.collect(generation)
                return

    def collect(self) -> None:
        """Collect everything now (from the GUI thread)."""
        gc.collect()

    def stop(self) -> None:
        """Give collection back to Python (after a last full collection here)."""
        self._timer.stop()
        gc.collect()
        gc.enable()
