"""The GUI's garbage collection: cycles holding Qt objects are freed on the GUI thread, never a worker's."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

from relaywizard.gui.collector import MainThreadCollector


class Holder(QObject):
    """A Qt object in a reference cycle, with a running timer, as a page with a lambda slot is."""

    def __init__(self) -> None:
        super().__init__()
        self.me = self  # the cycle: only the cyclic collector can free this
        self.timer = QTimer(self)
        self.timer.start(10_000)


@pytest.fixture
def collector(qapp: QApplication) -> Iterator[MainThreadCollector]:
    was_enabled = gc.isenabled()
    gc.enable()
    made = MainThreadCollector(interval_ms=10_000)
    yield made
    made.stop()
    if not was_enabled:
        gc.disable()


def test_the_collector_turns_automatic_collection_off_and_stop_turns_it_back_on(
    collector: MainThreadCollector,
) -> None:
    assert not gc.isenabled()
    collector.stop()
    assert gc.isenabled()
    gc.disable()  # for the fixture's own stop()


def test_a_cycle_dropped_on_the_gui_thread_is_freed_there_even_when_a_worker_allocates_a_lot(
    collector: MainThreadCollector,
) -> None:
    freed_on: list[str] = []
    holder = Holder()
    weakref.finalize(holder, lambda: freed_on.append(threading.current_thread().name))
    del holder

    kept: list[list[int]] = []

    def allocate() -> None:  # far past generation 0's threshold: would trigger a collection here
        kept.extend([index] for index in range(200_000))

    worker = threading.Thread(target=allocate, name="worker")
    worker.start()
    worker.join()
    assert freed_on == []

    collector.check()  # what its timer does: the counts are past the thresholds now
    assert freed_on == [threading.main_thread().name]


def test_check_does_nothing_while_the_counts_are_under_the_thresholds(collector: MainThreadCollector) -> None:
    gc.collect()
    freed: list[bool] = []
    holder = Holder()
    weakref.finalize(holder, lambda: freed.append(True))
    del holder
    collector.check()
    assert freed == []
    collector.collect()
    assert freed == [True]
