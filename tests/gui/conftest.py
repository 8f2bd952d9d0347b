"""Running asyncio under Qt in the GUI tests: one qasync loop per test, and bounded waits on it.

The application runs the wizard on qasync's loop, so the tests do too: ``qloop`` makes the loop,
``run(qloop, scenario())`` drives a test's coroutine on it with a time limit, and waits poll with
``await until(...)``. ``qtbot.waitUntil`` and ``waitSignal`` would spin Qt's loop without running the
asyncio side (and can hang the teardown).

Some test modules define their own ``qloop`` (a module's fixture wins over this one); the functions here
are for any module to import: ``from tests.gui.conftest import run, until``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import qasync
from PySide6.QtWidgets import QApplication

from relaywizard.gui.collector import MainThreadCollector

T = TypeVar("T")


@pytest.fixture(scope="package", autouse=True)
def main_thread_collector(qapp: QApplication) -> Iterator[MainThreadCollector]:
    """As in the application: Python's collector runs on the GUI thread only (see gui/collector.py).

    Package scope: the tests outside tests/gui get Python's own collection back.
    """
    collector = MainThreadCollector()
    yield collector
    collector.stop()


@pytest.fixture(autouse=True)
def collect_after_each_test(main_thread_collector: MainThreadCollector) -> Iterator[None]:
    """The widgets a test dropped are freed here, on the GUI thread, before the next test starts threads."""
    yield
    main_thread_collector.collect()


@pytest.fixture
def qloop(qapp: QApplication) -> Iterator[qasync.QEventLoop]:
    """qasync's loop over the test's QApplication: asyncio tasks and Qt events run together, as in the app.

    Tasks a test leaves behind are cancelled and given a few seconds to finish, so nothing outlives it.
    """
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=5))
        asyncio.set_event_loop(None)
        loop.close()


def run(loop: qasync.QEventLoop, coroutine: Coroutine[Any, Any, T], timeout: float = 15) -> T:
    """Run a test's scenario on the qasync loop; a hang fails the test instead of stalling the session."""
    result: T = loop.run_until_complete(asyncio.wait_for(coroutine, timeout))
    return result


async def until(condition: Callable[[], object], within: float = 5.0, what: str = "the condition") -> None:
    """Let the loop run (Qt events and asyncio tasks) until ``condition()`` holds, for ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {within:g} s")
        await asyncio.sleep(0.01)
